//! `archctl config` and `archctl boot`, in private binfmt_misc instances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::RunExt;

use support::{ARCHCTL, Sandbox, assert_code, assert_error_line, stderr, stdout};

const FOREIGN: &str = if cfg!(target_arch = "aarch64") {
    "riscv64"
} else {
    "aarch64"
};

#[test]
fn config_init_show_and_overwrite_protection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etc/archctl/config.toml");
    let p = path.to_str().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(ARCHCTL)
            .args(["--config", p])
            .args(args)
            .run()
    };
    assert_code(&run(&["config", "init"]), 0);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("architectures = \"all\"") && text.contains("# "),
        "{text}"
    );
    let out = run(&["config", "init"]);
    assert_code(&out, 1);
    assert_error_line(&out, "exists already");
    std::fs::write(&path, "[binfmt]\nverify = true\n").unwrap();
    assert_code(&run(&["config", "init", "--force"]), 0);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    let out = run(&["--json", "config", "show"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["binfmt"]["architectures"], "all");
    assert_eq!(v["binfmt"]["flags"], "F");
    // ARCHCTL_CONFIG names the file too.
    std::fs::write(&path, "[binfmt]\ncolour = \"red\"\n").unwrap();
    let out = std::process::Command::new(ARCHCTL)
        .args(["config", "show"])
        .env("ARCHCTL_CONFIG", &path)
        .run();
    assert_code(&out, 1);
    assert_error_line(&out, "unknown field `colour`");
    assert_error_line(&out, p);
}

#[test]
fn boot_applies_the_configuration_idempotently() {
    require_sandbox!();
    let sb = Sandbox::new();
    let cfg = sb.tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[binfmt]\narchitectures = [\"{FOREIGN}\", \"s390x\", \"riscv32\"]\n[emulators]\nriscv32 = \"/nonexistent/qemu-riscv32\"\n"
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let out = sb.archctl(&["--config", c, "boot"]);
    // riscv32 was named and has no emulator: everything else is registered, and the
    // exit code says not every selected architecture is served.
    assert_code(&out, 1);
    assert_error_line(&out, "riscv32: no emulator for riscv32");
    let line = stdout(&out);
    assert!(
        line.starts_with("archctl boot: 2 registered") && line.contains("1 without emulator"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "one-line summary: {line}");
    assert_eq!(
        sb.entries(),
        [format!("qemu-{FOREIGN}"), "qemu-s390x".to_string()]
    );
    let (out, v) = sb.archctl_json(&["--config", c, "boot"]);
    assert_code(&out, 1);
    assert!(
        v["summary"].as_str().unwrap().contains("2 unchanged"),
        "{v}"
    );
    assert_eq!(v["result"]["unserved"], serde_json::json!(["riscv32"]));
    assert_eq!(v["config_found"], true);
    // The registered entries work.
    let prog = sb.program_file(FOREIGN);
    assert_eq!(
        stdout(&sb.command(&prog).run()),
        format!("archctl-test {FOREIGN} ok\n")
    );
}

#[test]
fn boot_without_a_file_applies_the_defaults_and_a_bad_file_changes_nothing() {
    require_sandbox!();
    let sb = Sandbox::new();
    let bad = sb.tmp.path().join("bad.toml");
    std::fs::write(&bad, "[binfmt]\narchitectures = [\"z80\"]\n").unwrap();
    let out = sb.archctl(&["--config", bad.to_str().unwrap(), "boot"]);
    assert_code(&out, 1);
    assert_error_line(&out, "binfmt.architectures");
    assert!(sb.entries().is_empty(), "{:?}", sb.entries());
    let none = sb.tmp.path().join("missing.toml");
    let out = sb.archctl(&["--config", none.to_str().unwrap(), "boot"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("not found: defaults"),
        "{}",
        stdout(&out)
    );
    assert!(
        sb.entries().len() >= 20,
        "{:?} {}",
        sb.entries(),
        stderr(&out)
    );
}

#[test]
fn exported_binfmt_d_files_give_systemd_binfmt_the_same_entries_as_enable() {
    require_sandbox!();
    let systemd_binfmt = "/usr/lib/systemd/systemd-binfmt";
    skip_unless!(
        std::path::Path::new(systemd_binfmt).exists(),
        "{systemd_binfmt} (systemd) not installed"
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(ARCHCTL)
        .args([
            "export",
            "--format",
            "binfmt.d",
            FOREIGN,
            "s390x",
            "linux/arm/v7",
            "--output",
        ])
        .arg(out_dir.path())
        .run();
    assert_code(&out, 0);
    let mut files: Vec<String> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    // systemd-binfmt writes to /proc/sys/fs/binfmt_misc: give it a private instance there.
    let sd = Sandbox::new();
    let out = sd.sh(&format!(
        "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && {systemd_binfmt} {}",
        files.join(" ")
    ));
    assert!(out.status.success(), "systemd-binfmt: {}", stderr(&out));
    let read = |sb: &Sandbox, dir: &str| -> Vec<(String, String)> {
        let out = sb.sh(&format!(
            "cd {dir} && for f in qemu-*; do echo \"== $f\"; cat \"$f\"; done"
        ));
        stdout(&out)
            .split("== ")
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (n, t) = s.split_once('\n').unwrap();
                (n.to_string(), t.to_string())
            })
            .collect()
    };
    let by_systemd = read(&sd, "/proc/sys/fs/binfmt_misc");
    let ours = Sandbox::new();
    assert_code(
        &ours.archctl(&["enable", "--no-verify", FOREIGN, "s390x", "linux/arm/v7"]),
        0,
    );
    let by_archctl = read(&ours, ours.dir.to_str().unwrap());
    assert_eq!(by_systemd.len(), 3);
    assert_eq!(by_systemd, by_archctl);
}

#[test]
fn boot_keeps_an_equivalent_distribution_entry_and_lists_a_conflict() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    let rule = archctl::arch::Table::builtin().get(FOREIGN).unwrap();
    let esc = archctl::arch::escape_bytes;
    // As Debian's /usr/lib/binfmt.d/qemu-*.conf registers it: same name, a symlink to the
    // same emulator, POF. It serves the architecture: left alone, reported unchanged.
    let link = sb.tmp.path().join(format!("{FOREIGN}-binfmt-P"));
    std::os::unix::fs::symlink(format!("/usr/bin/qemu-{FOREIGN}-static"), &link).unwrap();
    sb.register_raw(&format!(
        ":qemu-{FOREIGN}:M::{}:{}:{}:POF",
        esc(&rule.magic),
        esc(&rule.mask),
        link.display()
    ));
    // Without F it does not serve containers: a conflict.
    let s390x = archctl::arch::Table::builtin().get("s390x").unwrap();
    sb.register_raw(&format!(
        ":qemu-s390x:M::{}:{}:/usr/bin/qemu-s390x-static:P",
        esc(&s390x.magic),
        esc(&s390x.mask)
    ));
    let before = sb.snapshot();
    let cfg = sb.tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("[binfmt]\narchitectures = [\"{FOREIGN}\", \"s390x\", \"ppc64le\"]\n"),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let (out, v) = sb.archctl_json(&["--config", c, "boot"]);
    // The conflict is listed with its fix, the rest registered, exit 1.
    assert_code(&out, 1);
    assert_error_line(&out, "qemu-s390x exists and differs");
    assert!(stderr(&out).contains("force = true"), "{}", stderr(&out));
    let summary = v["summary"].as_str().unwrap();
    assert!(
        summary.contains("1 registered")
            && summary.contains("1 unchanged")
            && summary.contains("1 conflicting"),
        "{v}"
    );
    let e = v["result"]["entries"].as_array().unwrap();
    assert_eq!(e[0]["action"], "unchanged", "{}", e[0]);
    let why = e[0]["equivalent"].as_str().unwrap();
    assert!(
        why.contains(&format!("-> /usr/bin/qemu-{FOREIGN}-static")) && why.contains("flags POF"),
        "{why}"
    );
    assert_eq!(e[0]["flags"], "POF");
    assert_eq!(e[1]["action"], "skipped-conflict");
    assert!(
        e[1]["note"].as_str().unwrap().contains("without F"),
        "{}",
        e[1]
    );
    assert_eq!(v["result"]["unserved"], serde_json::json!(["s390x"]));
    assert!(sb.entry("qemu-ppc64le").is_some());
    for (name, text) in &before {
        assert_eq!(sb.entry(name).as_ref(), Some(text), "{name} was touched");
    }
    // `enable` agrees: the equivalent entry is unchanged, the conflict an error that
    // writes nothing.
    let (out, v) = sb.archctl_json(&["enable", FOREIGN]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["action"], "unchanged");
    let snap = sb.snapshot();
    let out = sb.archctl(&["enable", FOREIGN, "s390x"]);
    assert_code(&out, 1);
    assert_error_line(&out, "exists and differs");
    assert_eq!(sb.snapshot(), snap);
    // force = true in the configuration replaces both with archctl's entries.
    std::fs::write(
        &cfg,
        format!("[binfmt]\narchitectures = [\"{FOREIGN}\", \"s390x\"]\nforce = true\n"),
    )
    .unwrap();
    let (out, v) = sb.archctl_json(&["--config", c, "boot"]);
    assert_code(&out, 0);
    assert_eq!(v["result"]["entries"][0]["action"], "replaced");
    assert_eq!(v["result"]["entries"][1]["action"], "replaced");
}

#[test]
fn boot_rolls_back_only_the_entry_that_fails_verification() {
    require_sandbox!();
    let sb = Sandbox::new();
    // An emulator that is a static program for this host but no emulator: it passes
    // the checks, registers, and fails its test program.
    let host = archctl::host::Host::detect(archctl::arch::Table::builtin());
    let fake = support::write_program(sb.tmp.path(), host.arch.as_deref().unwrap());
    let cfg = sb.tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[binfmt]\narchitectures = [\"{FOREIGN}\", \"s390x\"]\nverify = true\n[emulators]\ns390x = \"{}\"\n",
            fake.display()
        ),
    )
    .unwrap();
    let (out, v) = sb.archctl_json(&["--config", cfg.to_str().unwrap(), "boot"]);
    assert_code(&out, 1);
    assert_error_line(&out, "verification failed: s390x");
    let e = v["result"]["entries"].as_array().unwrap();
    assert_eq!(e[0]["action"], "registered", "{}", e[0]);
    assert_eq!(e[0]["verified"], true);
    assert_eq!(e[1]["action"], "rolled-back", "{}", e[1]);
    assert_eq!(e[1]["verified"], false);
    assert_eq!(v["result"]["unserved"], serde_json::json!(["s390x"]));
    // The good one stays, the bad one is gone.
    assert_eq!(sb.entries(), [format!("qemu-{FOREIGN}")]);
    // `enable` keeps its contract: any failure rolls the whole run back.
    let out = sb.archctl(&["enable", "riscv32", "--emulator", fake.to_str().unwrap()]);
    assert_code(&out, 1);
    assert_eq!(sb.entries(), [format!("qemu-{FOREIGN}")]);
}

#[test]
fn a_configured_emulator_path_the_register_syntax_cannot_carry_fails_that_architecture_alone() {
    require_sandbox!();
    let sb = Sandbox::new();
    let dir = sb.tmp.path().join("with:colon");
    std::fs::create_dir(&dir).unwrap();
    let bad = dir.join("qemu-s390x-static");
    std::fs::copy("/usr/bin/qemu-s390x-static", &bad).unwrap();
    let cfg = sb.tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[binfmt]\narchitectures = [\"{FOREIGN}\", \"s390x\"]\n[emulators]\ns390x = \"{}\"\n",
            bad.display()
        ),
    )
    .unwrap();
    let (out, v) = sb.archctl_json(&["--config", cfg.to_str().unwrap(), "boot"]);
    assert_code(&out, 1);
    assert_error_line(&out, "[emulators] s390x = ");
    assert_error_line(&out, "must not contain ':'");
    assert_eq!(v["result"]["entries"][0]["action"], "registered");
    assert_eq!(v["result"]["entries"][1]["action"], "skipped-missing");
    assert_eq!(sb.entries(), [format!("qemu-{FOREIGN}")]);
}
