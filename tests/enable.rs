//! `archctl enable` / `disable` / `status` / `test` against the real kernel, each test in
//! its own private binfmt_misc instance (user + mount namespace, Linux 6.7+), so they run
//! in parallel and never touch the host's table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use support::RunExt;

use support::{Sandbox, assert_code, assert_error_line, stderr, stdout};

/// A foreign target that every Debian qemu-user-static has and this host does not run.
const FOREIGN: &str = if cfg!(target_arch = "aarch64") {
    "riscv64"
} else {
    "aarch64"
};
const FOREIGN2: &str = "s390x";
const QEMU_DIR: &str = "/usr/bin";

fn emulator(arch: &str) -> String {
    format!("{QEMU_DIR}/qemu-{arch}-static")
}

#[test]
fn enable_registers_verifies_and_kernel_shows_entry() {
    require_sandbox!();
    let sb = Sandbox::new();
    assert!(!sb.is_mounted());
    let (out, v) = sb.archctl_json(&["enable", FOREIGN]);
    assert_code(&out, 0);
    // archctl mounted binfmt_misc itself and said so.
    assert!(sb.is_mounted());
    assert!(v["mounted"].as_bool().unwrap());
    assert!(
        stderr(&out).contains("mounted binfmt_misc"),
        "{}",
        stderr(&out)
    );
    let e = &v["entries"][0];
    assert_eq!(e["arch"], FOREIGN);
    assert_eq!(e["name"], format!("qemu-{FOREIGN}"));
    assert_eq!(e["action"], "registered");
    assert_eq!(e["interpreter"], emulator(FOREIGN));
    assert_eq!(e["flags"], "F");
    assert_eq!(e["verified"], true);
    assert!(v["host"].is_string());
    // The kernel's own view.
    let text = sb.entry(&format!("qemu-{FOREIGN}")).expect("entry exists");
    assert!(text.starts_with("enabled\n"), "{text}");
    assert!(
        text.contains(&format!("interpreter {}\n", emulator(FOREIGN))),
        "{text}"
    );
    assert!(text.contains("flags: F\n"), "{text}");
    let rule = archctl::arch::Table::builtin().get(FOREIGN).unwrap();
    let magic_hex: String = rule.magic.iter().map(|b| format!("{b:02x}")).collect();
    assert!(text.contains(&format!("magic {magic_hex}")), "{text}");
}

#[test]
fn foreign_program_runs_by_path_and_inside_chroot_with_f() {
    require_sandbox!();
    let sb = Sandbox::new();
    assert_code(&sb.archctl(&["enable", FOREIGN]), 0);
    // Plain path.
    let prog = sb.program_file(FOREIGN);
    let out = sb.command(&prog).run();
    assert_code(&out, 0);
    assert_eq!(stdout(&out), format!("archctl-test {FOREIGN} ok\n"));
    // A chroot that holds nothing but the foreign program: only F (interpreter opened at
    // registration) makes this work.
    let root = sb.tmp.path().join("chroot");
    std::fs::create_dir(&root).unwrap();
    support::write_program(&root, FOREIGN);
    let out = sb
        .command("chroot")
        .arg(&root)
        .arg(format!("/prog-{FOREIGN}"))
        .run();
    assert_code(&out, 0);
    assert_eq!(stdout(&out), format!("archctl-test {FOREIGN} ok\n"));
}

#[test]
fn without_f_the_chroot_cannot_find_the_emulator() {
    require_sandbox!();
    let sb = Sandbox::new();
    let out = sb.archctl(&["enable", FOREIGN, "--flags", ""]);
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("warning: flags without F"),
        "{}",
        stderr(&out)
    );
    assert!(
        sb.entry(&format!("qemu-{FOREIGN}"))
            .unwrap()
            .contains("flags: \n")
    );
    let root = sb.tmp.path().join("chroot");
    std::fs::create_dir(&root).unwrap();
    support::write_program(&root, FOREIGN);
    let out = sb
        .command("chroot")
        .arg(&root)
        .arg(format!("/prog-{FOREIGN}"))
        .run();
    assert_ne!(out.status.code(), Some(0), "ran without F inside a chroot?");
}

#[test]
fn enable_is_idempotent() {
    require_sandbox!();
    let sb = Sandbox::new();
    assert_code(&sb.archctl(&["enable", FOREIGN, FOREIGN2]), 0);
    let before = sb.snapshot();
    let (out, v) = sb.archctl_json(&["enable", FOREIGN2, FOREIGN]);
    assert_code(&out, 0);
    for e in v["entries"].as_array().unwrap() {
        assert_eq!(e["action"], "unchanged", "{e}");
        assert_eq!(e["verified"], serde_json::Value::Null);
    }
    assert_eq!(sb.snapshot(), before);
}

#[test]
fn aliases_and_platforms_are_accepted() {
    require_sandbox!();
    let sb = Sandbox::new();
    let (out, v) = sb.archctl_json(&["enable", "linux/s390x", "PPC64EL", "--no-verify"]);
    assert_code(&out, 0);
    let names: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["qemu-s390x", "qemu-ppc64le"]);
    assert_eq!(v["entries"][0]["verified"], serde_json::Value::Null);
}

#[test]
fn host_native_architectures_are_skipped() {
    require_sandbox!();
    let sb = Sandbox::new();
    let host = archctl::host::Host::detect(archctl::arch::Table::builtin());
    let host_arch = host.arch.clone().unwrap();
    let (out, v) = sb.archctl_json(&["enable", &host_arch]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["action"], "skipped-native");
    assert!(sb.entries().is_empty(), "{:?}", sb.entries());
    if host_arch == "x86_64" {
        // i386 runs natively on x86_64 (decided by executing it, not assumed).
        let (out, v) = sb.archctl_json(&["enable", "i386"]);
        assert_code(&out, 0);
        assert_eq!(v["entries"][0]["action"], "skipped-native");
    }
}

#[test]
fn an_entry_of_the_same_name_that_serves_is_kept_and_one_that_does_not_needs_force() {
    require_sandbox!();
    let sb = Sandbox::new();
    let name = format!("qemu-{FOREIGN}");
    // The same emulator under another path (a copy): the same content, so it serves.
    let copy = sb.tmp.path().join(format!("qemu-{FOREIGN}-static"));
    std::fs::copy(emulator(FOREIGN), &copy).unwrap();
    let copy = copy.to_str().unwrap().to_string();
    assert_code(&sb.archctl(&["enable", FOREIGN, "--emulator", &copy]), 0);
    let before = sb.snapshot();
    let (out, v) = sb.archctl_json(&["enable", FOREIGN]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["action"], "unchanged", "{v}");
    assert_eq!(v["entries"][0]["interpreter"], copy.as_str());
    assert!(
        v["entries"][0]["equivalent"]
            .as_str()
            .unwrap()
            .contains("same content"),
        "{v}"
    );
    assert_eq!(sb.snapshot(), before);
    // Another build (different bytes) that runs the test program: it serves too.
    let build = sb.tmp.path().join("other-build");
    let mut bytes = std::fs::read(emulator(FOREIGN)).unwrap();
    bytes.extend_from_slice(b"another build");
    std::fs::write(&build, bytes).unwrap();
    std::fs::set_permissions(&build, std::fs::Permissions::from_mode(0o755)).unwrap();
    let build = build.to_str().unwrap().to_string();
    assert_code(
        &sb.archctl(&["enable", FOREIGN, "--force", "--emulator", &build]),
        0,
    );
    let (out, v) = sb.archctl_json(&["enable", FOREIGN]);
    assert_code(&out, 0);
    assert!(
        v["entries"][0]["equivalent"]
            .as_str()
            .unwrap()
            .contains("another static build"),
        "{v}"
    );
    // Another architecture's emulator under this name: it fails the test program, so
    // the entry does not serve: an error naming it, the fix, and nothing written.
    let wrong = emulator("s390x");
    let rule = archctl::arch::Table::builtin().get(FOREIGN).unwrap();
    let esc = archctl::arch::escape_bytes;
    assert!(
        sb.sh(&format!("echo -1 > '{}/{name}'", sb.dir.display()))
            .status
            .success()
    );
    sb.register_raw(&format!(
        ":{name}:M::{}:{}:{wrong}:F",
        esc(&rule.magic),
        esc(&rule.mask)
    ));
    let before = sb.snapshot();
    let out = sb.archctl(&["enable", FOREIGN]);
    assert_code(&out, 1);
    assert_error_line(&out, &format!("entry {name} exists and differs"));
    assert_error_line(&out, &wrong);
    assert_error_line(&out, "its test program failed");
    assert!(
        stderr(&out).contains(&format!(
            "hint: add --force to replace it: archctl enable --force {FOREIGN}"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.snapshot(), before, "table changed by a refused enable");
    let (out, v) = sb.archctl_json(&["enable", FOREIGN, "--force"]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["action"], "replaced");
    assert_eq!(v["entries"][0]["verified"], true);
    assert!(
        sb.entry(&name)
            .unwrap()
            .contains(&format!("interpreter {}\n", emulator(FOREIGN)))
    );
}

#[test]
fn identical_disabled_entry_is_enabled() {
    require_sandbox!();
    let sb = Sandbox::new();
    assert_code(&sb.archctl(&["enable", FOREIGN, "--no-verify"]), 0);
    let name = format!("qemu-{FOREIGN}");
    let out = sb.sh(&format!("echo 0 > '{}/{name}'", sb.dir.display()));
    assert!(out.status.success());
    assert!(sb.entry(&name).unwrap().starts_with("disabled"));
    let (out, v) = sb.archctl_json(&["enable", FOREIGN]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["action"], "enabled");
    assert_eq!(v["entries"][0]["verified"], true);
    assert!(sb.entry(&name).unwrap().starts_with("enabled"));
}

/// Rosetta registers the x86_64 magic under its own name; here the same situation with
/// the foreign architecture's magic under `rosetta`.
fn register_foreign_claimant(sb: &Sandbox) {
    sb.register_rule("rosetta", FOREIGN, &emulator(FOREIGN));
}

#[test]
fn another_entry_claiming_the_arch_is_left_alone_unless_force() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    register_foreign_claimant(&sb);
    let before = sb.snapshot();
    let (out, v) = sb.archctl_json(&["enable", FOREIGN]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["action"], "skipped-foreign");
    assert!(
        v["entries"][0]["note"]
            .as_str()
            .unwrap()
            .contains("rosetta")
    );
    assert_eq!(sb.snapshot(), before);
    let (out, v) = sb.archctl_json(&["enable", FOREIGN, "--force"]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["action"], "registered");
    assert_eq!(v["entries"][0]["verified"], true);
    assert_eq!(
        sb.entries(),
        [format!("qemu-{FOREIGN}"), "rosetta".to_string()]
    );
    // disable --all removes qemu-* only.
    let (out, v) = sb.archctl_json(&["disable", "--all"]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["action"], "removed");
    assert_eq!(sb.entries(), ["rosetta"]);
}

#[test]
fn disable_removes_only_named_entries_and_is_a_noop_when_absent() {
    require_sandbox!();
    let sb = Sandbox::new();
    assert_code(
        &sb.archctl(&["enable", FOREIGN, FOREIGN2, "--no-verify"]),
        0,
    );
    let (out, v) = sb.archctl_json(&["disable", FOREIGN2, "riscv32"]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["action"], "removed");
    assert_eq!(v["entries"][1]["action"], "not-registered");
    assert_eq!(sb.entries(), [format!("qemu-{FOREIGN}")]);
    let out = sb.archctl(&["disable", "bogus"]);
    assert_code(&out, 2);
    assert_error_line(&out, "unknown architecture \"bogus\"");
    assert_eq!(sb.entries(), [format!("qemu-{FOREIGN}")]);
}

#[test]
fn dry_run_prints_register_strings_and_changes_nothing() {
    require_sandbox!();
    let sb = Sandbox::new();
    let (out, v) = sb.archctl_json(&["enable", FOREIGN, "--dry-run"]);
    assert_code(&out, 0);
    assert_eq!(v["dry_run"], true);
    let reg = v["entries"][0]["register"].as_str().unwrap();
    assert!(
        reg.starts_with(&format!(":qemu-{FOREIGN}:M::\\x7f\\x45\\x4c\\x46")),
        "{reg}"
    );
    assert!(reg.ends_with(&format!(":{}:F", emulator(FOREIGN))), "{reg}");
    assert!(!sb.is_mounted(), "dry run mounted binfmt_misc");
    let human = stdout(&sb.archctl(&["enable", FOREIGN, "--dry-run"]));
    assert!(human.contains(reg), "{human}");
}

#[test]
fn bad_inputs_fail_cleanly_and_leave_the_table_unchanged() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    assert_code(&sb.archctl(&["enable", FOREIGN2, "--no-verify"]), 0);
    let before = sb.snapshot();
    let dynamic = "/bin/true";
    let script = sb.tmp.path().join("not-elf");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let wrong_machine = sb.program_file(FOREIGN);
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["enable".into(), "z80".into()],
            2,
            "unknown architecture \"z80\": valid names are",
        ),
        (
            vec![
                "enable".into(),
                FOREIGN.into(),
                "--flags".into(),
                "FX".into(),
            ],
            2,
            "invalid flags \"FX\"",
        ),
        (
            vec![
                "enable".into(),
                FOREIGN.into(),
                "riscv64".into(),
                "--emulator".into(),
                emulator(FOREIGN),
            ],
            2,
            "--emulator names one file",
        ),
        (vec!["enable".into()], 2, "required"),
        (
            vec!["enable".into(), "--all".into(), FOREIGN.into()],
            2,
            "cannot be used with",
        ),
        (
            vec![
                "enable".into(),
                FOREIGN.into(),
                "--emulator".into(),
                "/nonexistent/qemu".into(),
            ],
            1,
            "/nonexistent/qemu",
        ),
        (
            vec![
                "enable".into(),
                FOREIGN.into(),
                "--emulator-dir".into(),
                "/nonexistent".into(),
            ],
            1,
            "no emulator for",
        ),
        (
            vec![
                "enable".into(),
                FOREIGN.into(),
                "--emulator".into(),
                dynamic.into(),
            ],
            1,
            "dynamically linked",
        ),
        (
            vec![
                "enable".into(),
                FOREIGN.into(),
                "--emulator".into(),
                script.display().to_string(),
            ],
            1,
            "not an ELF",
        ),
        (
            vec![
                "enable".into(),
                FOREIGN.into(),
                "--emulator".into(),
                wrong_machine.display().to_string(),
            ],
            1,
            "does not run on this host",
        ),
        (
            vec![
                "enable".into(),
                FOREIGN.into(),
                "--emulator".into(),
                "/opt/a:b".into(),
            ],
            1,
            "/opt/a:b",
        ),
        (vec!["frobnicate".into()], 2, "unrecognized subcommand"),
    ];
    for (args, code, needle) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sb.archctl(&a);
        assert_code(&out, code);
        assert_error_line(&out, needle);
        let err = stderr(&out);
        assert!(
            err.lines()
                .filter(|l| l.starts_with("archctl: error:"))
                .count()
                == 1,
            "{args:?}: {err}"
        );
        assert_eq!(sb.snapshot(), before, "{args:?} changed the table");
    }
    // Hints name the fix.
    let out = sb.archctl(&["enable", FOREIGN, "--emulator", dynamic]);
    assert!(
        stderr(&out).contains("hint: install the static build"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn failed_verification_rolls_back_everything_of_the_run() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    assert_code(&sb.archctl(&["enable", FOREIGN2, "--no-verify"]), 0);
    let before = sb.snapshot();
    // A fake emulator dir: a good FOREIGN emulator, and for riscv64 a static host program
    // that runs but prints the wrong thing (the host's own test program).
    let dir = sb.tmp.path().join("emus");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        emulator(FOREIGN),
        dir.join(format!("qemu-{FOREIGN}-static")),
    )
    .unwrap();
    let host = archctl::host::Host::detect(archctl::arch::Table::builtin());
    let fake = support::write_program(&dir, host.arch.as_deref().unwrap());
    let bad = if FOREIGN == "riscv64" {
        "mips64el"
    } else {
        "riscv64"
    };
    std::fs::rename(&fake, dir.join(format!("qemu-{bad}-static"))).unwrap();
    let (out, v) = sb.archctl_json(&[
        "enable",
        FOREIGN,
        bad,
        "--emulator-dir",
        dir.to_str().unwrap(),
    ]);
    assert_code(&out, 1);
    assert_error_line(&out, "verification failed");
    assert_error_line(&out, "rolled back");
    let by_arch = |a: &str| {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["arch"] == a)
            .unwrap()
            .clone()
    };
    assert_eq!(by_arch(FOREIGN)["verified"], true);
    assert_eq!(by_arch(bad)["verified"], false);
    assert_eq!(sb.snapshot(), before, "rollback incomplete");
}

#[test]
fn enable_all_registers_every_foreign_target_and_skips_native() {
    require_sandbox!();
    let sb = Sandbox::new();
    let (out, v) = sb.archctl_json(&["enable", "--all"]);
    assert_code(&out, 0);
    let entries = v["entries"].as_array().unwrap();
    let table = archctl::arch::Table::builtin();
    assert_eq!(entries.len(), table.rules().len());
    let host = archctl::host::Host::detect(table);
    let mut registered = 0;
    for e in entries {
        let arch = e["arch"].as_str().unwrap();
        let action = e["action"].as_str().unwrap();
        if Some(arch) == host.arch.as_deref() {
            assert_eq!(action, "skipped-native", "{e}");
        }
        if action == "registered" {
            registered += 1;
            assert_eq!(e["verified"], true, "{e}");
            assert!(sb.entry(&format!("qemu-{arch}")).is_some());
        }
    }
    assert!(registered >= 20, "only {registered} registered");
    if host.arch.as_deref() == Some("x86_64") {
        for a in ["i386", "i486"] {
            let e = entries.iter().find(|e| e["arch"] == a).unwrap();
            assert_eq!(e["action"], "skipped-native", "{e}");
        }
    }
    // `test` with no arguments covers every registered and native architecture.
    let (out, v) = sb.archctl_json(&["test"]);
    assert_code(&out, 0);
    assert_eq!(
        v["results"].as_array().unwrap().len(),
        registered
            + v["results"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["mode"] == "native")
                .count()
    );
}

#[test]
fn status_reports_entries_including_foreign_ones() {
    require_sandbox!();
    let sb = Sandbox::new();
    let (out, v) = sb.archctl_json(&["status"]);
    assert_code(&out, 0);
    assert_eq!(v["binfmt_misc"]["mounted"], false);
    assert_eq!(v["entries"].as_array().unwrap().len(), 0);
    assert!(
        v["native"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == v["host"]["arch"].as_str().unwrap())
    );
    assert!(
        v["host"]["kernel"]
            .as_str()
            .unwrap()
            .starts_with(char::is_numeric)
    );

    assert_code(&sb.archctl(&["enable", FOREIGN, "--no-verify"]), 0);
    register_foreign_claimant(&sb);
    sb.register_raw(":pyc:E::pyc::/usr/bin/python3:");
    let (out, v) = sb.archctl_json(&["status"]);
    assert_code(&out, 0);
    assert_eq!(v["binfmt_misc"]["mounted"], true);
    assert_eq!(v["binfmt_misc"]["enabled"], true);
    let entries = v["entries"].as_array().unwrap();
    let get = |n: &str| entries.iter().find(|e| e["name"] == n).unwrap();
    let q = get(&format!("qemu-{FOREIGN}"));
    for key in [
        "name",
        "arch",
        "enabled",
        "interpreter",
        "flags",
        "magic",
        "mask",
        "offset",
        "managed",
        "interpreter_ok",
    ] {
        assert!(q.get(key).is_some(), "missing {key}: {q}");
    }
    assert_eq!(q["arch"], FOREIGN);
    assert_eq!(q["managed"], true);
    assert_eq!(q["interpreter_ok"], true);
    assert_eq!(q["offset"], 0);
    assert!(q["magic"].as_str().unwrap().starts_with("7f454c46"));
    let r = get("rosetta");
    assert_eq!(r["arch"], FOREIGN);
    assert_eq!(r["managed"], false);
    let p = get("pyc");
    assert_eq!(p["arch"], "unknown");
    assert_eq!(p["magic"], serde_json::Value::Null);
    assert_eq!(p["interpreter_ok"], false, "python3 is dynamic: {p}");
    let human = stdout(&sb.archctl(&["status"]));
    assert!(
        human.contains(&format!("qemu-{FOREIGN}")) && human.contains("rosetta"),
        "{human}"
    );
}

#[test]
fn test_command_passes_and_fails_honestly() {
    require_sandbox!();
    let sb = Sandbox::new();
    assert_code(&sb.archctl(&["enable", FOREIGN, "--no-verify"]), 0);
    let (out, v) = sb.archctl_json(&["test", FOREIGN]);
    assert_code(&out, 0);
    let r = &v["results"][0];
    assert_eq!(r["ok"], true);
    assert_eq!(r["mode"], "emulated");
    assert_eq!(r["output"], format!("archctl-test {FOREIGN} ok\n"));
    assert!(r["time_ms"].as_f64().unwrap() > 0.0);
    // No handler for FOREIGN2: exit 1 and the reason.
    let (out, v) = sb.archctl_json(&["test", FOREIGN, FOREIGN2]);
    assert_code(&out, 1);
    assert_eq!(v["results"][0]["ok"], true);
    assert_eq!(v["results"][1]["ok"], false);
    assert_error_line(
        &out,
        &format!("no enabled binfmt_misc handler for {FOREIGN2}"),
    );
    // A handler that is there but broken (its interpreter prints the wrong thing).
    let fake_dir = sb.tmp.path().join("fake");
    std::fs::create_dir(&fake_dir).unwrap();
    let host = archctl::host::Host::detect(archctl::arch::Table::builtin());
    let fake = support::write_program(&fake_dir, host.arch.as_deref().unwrap());
    assert_code(
        &sb.archctl(&[
            "enable",
            FOREIGN2,
            "--no-verify",
            "--emulator",
            fake.to_str().unwrap(),
        ]),
        0,
    );
    let (out, v) = sb.archctl_json(&["test", FOREIGN2]);
    assert_code(&out, 1);
    assert!(
        v["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("expected"),
        "{v}"
    );
}

#[test]
fn concurrent_enables_do_not_race() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    let outs: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| sb.archctl_json(&["enable", FOREIGN, FOREIGN2, "--no-verify"])))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut registered = 0;
    for (out, v) in &outs {
        assert_code(out, 0);
        for e in v["entries"].as_array().unwrap() {
            match e["action"].as_str().unwrap() {
                "registered" => registered += 1,
                "unchanged" => {}
                other => panic!("unexpected action {other}"),
            }
        }
    }
    assert_eq!(registered, 2, "each entry registered exactly once");
    assert_eq!(
        sb.entries(),
        [format!("qemu-{FOREIGN}"), format!("qemu-{FOREIGN2}")]
    );
}

#[test]
fn quiet_prints_nothing_on_success() {
    require_sandbox!();
    let sb = Sandbox::new();
    let out = sb.archctl(&["-q", "enable", FOREIGN]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "");
}

#[test]
fn native_detection_is_not_fooled_by_a_handler() {
    require_sandbox!();
    let host = archctl::host::Host::detect(archctl::arch::Table::builtin());
    if host.arch.as_deref() != Some("x86_64") {
        eprintln!("skipped: needs an x86_64 host (i386 is then known to run natively)");
        return;
    }
    let sb = Sandbox::mounted();
    // A handler that catches i386 programs (and would print the wrong thing).
    sb.register_rule("qemu-i386", "i386", &emulator(FOREIGN));
    // Executing i386 directly now goes through that handler, so only the probe in a
    // private instance can tell that i386 runs natively.
    let prog = sb.program_file("i386");
    let out = sb.command(&prog).run();
    assert_ne!(
        stdout(&out),
        "archctl-test i386 ok\n",
        "handler did not catch i386"
    );
    let (out, v) = sb.archctl_json(&["status"]);
    assert_code(&out, 0);
    let native: Vec<&str> = v["native"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(native.contains(&"i386"), "{native:?}");
    let (out, v) = sb.archctl_json(&["enable", "i386"]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["action"], "skipped-native");
}

#[test]
fn native_set_is_cached_per_boot_and_keyed() {
    require_sandbox!();
    let sb = Sandbox::new();
    let (out, v) = sb.archctl_json(&["status"]);
    assert_code(&out, 0);
    let cache = sb.runtime_dir().join("native.json");
    let text = std::fs::read_to_string(&cache).expect("status writes the native cache");
    let mut c: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(c["native"], v["native"]);
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert!(c["key"].as_str().unwrap().contains(boot_id.trim()));
    // The cache is what later runs use...
    c["native"] = serde_json::json!(["x86_64", "cached-marker"]);
    std::fs::write(&cache, c.to_string()).unwrap();
    let (_, v) = sb.archctl_json(&["status"]);
    assert_eq!(v["native"][1], "cached-marker");
    // ...unless its key is not this boot's: then archctl probes again and rewrites it.
    c["key"] = serde_json::json!("another boot");
    std::fs::write(&cache, c.to_string()).unwrap();
    let (_, v) = sb.archctl_json(&["status"]);
    assert!(
        !v["native"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "cached-marker")
    );
    let rewritten: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    assert_ne!(rewritten["key"], "another boot");
}

#[test]
fn a_signal_never_leaves_a_half_registered_table() {
    require_sandbox!();
    use nix::sys::signal::{Signal, kill};
    // Whenever SIGTERM lands (planning, registering, verifying, done), the table ends
    // up either as before or complete, never in between.
    let mut outcomes = std::collections::BTreeMap::new();
    for delay_ms in [0u64, 5, 10, 20, 30, 45, 60, 80, 110, 150] {
        let sb = Sandbox::mounted();
        let child = sb
            .command(support::ARCHCTL)
            .env("ARCHCTL_RUNTIME_DIR", sb.runtime_dir())
            .arg("--binfmt-dir")
            .arg(&sb.dir)
            .args(["-q", "enable", "--all"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            Signal::SIGTERM,
        );
        let out = child.wait_with_output().unwrap();
        let n = sb.entries().len();
        let outcome = match out.status.code() {
            Some(0) => {
                assert!(n >= 20, "success but only {n} entries");
                "completed"
            }
            Some(1) => {
                assert_eq!(n, 0, "interrupted run left {n} entries: {}", stderr(&out));
                assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
                "rolled back"
            }
            None => {
                // Killed before archctl started changing anything.
                assert_eq!(n, 0, "killed with {n} entries registered");
                "killed before changes"
            }
            Some(c) => panic!("exit {c}: {}", stderr(&out)),
        };
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    eprintln!("outcomes: {outcomes:?}");
    // Without an interrupted run, nothing above exercised the rollback.
    assert!(
        outcomes.contains_key("rolled back"),
        "no run was interrupted mid-way and rolled back: {outcomes:?}"
    );
}

#[test]
fn binfmt_misc_switched_off_fails_enable_and_boot_and_changes_nothing() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    assert!(
        sb.sh(&format!("echo 0 > '{}/status'", sb.dir.display()))
            .status
            .success()
    );
    let before = sb.snapshot();
    for args in [
        &["enable", FOREIGN][..],
        &["--config", "/nonexistent/config.toml", "boot"],
    ] {
        let out = sb.archctl(args);
        assert_code(&out, 1);
        assert_error_line(&out, "binfmt_misc is switched off");
        assert!(
            stderr(&out).contains(&format!(
                "hint: switch it on: echo 1 > {}/status",
                sb.dir.display()
            )),
            "{}",
            stderr(&out)
        );
        assert_eq!(sb.snapshot(), before);
    }
    // --dry-run still plans, and says so.
    let out = sb.archctl(&["enable", FOREIGN, "--dry-run"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("switched off"), "{}", stderr(&out));
    assert!(
        sb.sh(&format!("echo 1 > '{}/status'", sb.dir.display()))
            .status
            .success()
    );
    assert_code(&sb.archctl(&["enable", FOREIGN]), 0);
}

#[test]
fn a_binfmt_dir_holding_files_is_never_mounted_over() {
    require_sandbox!();
    let sb = Sandbox::new();
    std::fs::write(sb.dir.join("keep-me"), "user data").unwrap();
    let out = sb.archctl(&["enable", FOREIGN]);
    assert_code(&out, 1);
    assert_error_line(&out, "neither a binfmt_misc mount nor an empty directory");
    assert!(!sb.is_mounted());
    assert_eq!(
        std::fs::read_to_string(sb.dir.join("keep-me")).unwrap(),
        "user data"
    );
    // An empty one is mounted (as before).
    std::fs::remove_file(sb.dir.join("keep-me")).unwrap();
    assert_code(&sb.archctl(&["enable", FOREIGN]), 0);
    assert!(sb.is_mounted());
}

#[test]
fn control_characters_and_odd_bytes_in_entries_never_reach_the_terminal_raw() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    // Names and interpreters are whatever whoever registered them wrote.
    let out = sb.sh(&format!(
        "printf ':evil\\033[2J:E::xyz::/bin/tr\\033]0;ue:' > '{0}/register' && printf ':odd\\377name:E::abc::/bin/true:' > '{0}/register'",
        sb.dir.display()
    ));
    assert!(out.status.success(), "{}", out.shown());
    let out = sb.archctl(&["status"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(!text.contains('\u{1b}'), "raw escape in: {text:?}");
    assert!(text.contains("evil\\x1b[2J"), "{text}");
    assert!(text.contains("/bin/tr\\x1b]0;ue"), "{text}");
    // Not UTF-8: listed, its odd byte escaped.
    assert!(text.contains("odd\\xffname"), "{text}");
    // JSON carries them too (escaped by JSON itself).
    let (out, v) = sb.archctl_json(&["status"]);
    assert_code(&out, 0);
    let names: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"evil\u{1b}[2J") && names.contains(&"odd\\xffname"),
        "{names:?}"
    );
}

#[test]
fn an_entry_never_proven_is_proven_by_the_next_verifying_enable() {
    require_sandbox!();
    let sb = Sandbox::new();
    let (out, v) = sb.archctl_json(&["enable", FOREIGN, "--no-verify"]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["verified"], serde_json::Value::Null);
    // The next enable that verifies proves it, once.
    let (out, v) = sb.archctl_json(&["enable", FOREIGN]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["action"], "unchanged");
    assert_eq!(v["entries"][0]["verified"], true, "{v}");
    let (out, v) = sb.archctl_json(&["enable", FOREIGN]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["verified"], serde_json::Value::Null, "{v}");
    // One that never worked (a static program for this host, but no emulator) is not
    // reported fine later: its proof fails, it is unserved, and it stays (not this
    // run's to take back).
    let host = archctl::host::Host::detect(archctl::arch::Table::builtin());
    let fake = support::write_program(sb.tmp.path(), host.arch.as_deref().unwrap());
    let fake = fake.to_str().unwrap();
    assert_code(
        &sb.archctl(&["enable", FOREIGN2, "--emulator", fake, "--no-verify"]),
        0,
    );
    let (out, v) = sb.archctl_json(&["enable", FOREIGN2, "--emulator", fake]);
    assert_code(&out, 1);
    assert_eq!(v["entries"][0]["action"], "unchanged");
    assert_eq!(v["entries"][0]["verified"], false);
    assert_error_line(&out, "registered earlier and never proven");
    assert!(sb.entries().contains(&format!("qemu-{FOREIGN2}")));
}

#[test]
fn a_failed_enable_takes_back_the_mount_it_made() {
    require_sandbox!();
    let sb = Sandbox::new();
    assert!(!sb.is_mounted());
    // Bad input found after mounting (the emulator is checked against the table).
    let out = sb.archctl(&["enable", FOREIGN, "--emulator", "/nonexistent/qemu"]);
    assert_code(&out, 1);
    assert!(!sb.is_mounted(), "a failed enable left binfmt_misc mounted");
    // A verification failure that rolls the run back, likewise.
    let host = archctl::host::Host::detect(archctl::arch::Table::builtin());
    let fake = support::write_program(sb.tmp.path(), host.arch.as_deref().unwrap());
    let out = sb.archctl(&["enable", FOREIGN2, "--emulator", fake.to_str().unwrap()]);
    assert_code(&out, 1);
    assert_error_line(&out, "verification failed");
    assert!(!sb.is_mounted());
    // A run that succeeds keeps it.
    assert_code(&sb.archctl(&["enable", FOREIGN]), 0);
    assert!(sb.is_mounted());
}
