//! `archctl doctor`: each check put in its failing state for real (private binfmt_misc
//! instances, mount namespaces with their own binfmt.d and boot service files, an
//! engine that does not answer), and the verdict, finding and fix checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{os::unix::fs::PermissionsExt, path::Path};

use serde_json::Value;
use support::{ARCHCTL, RunExt, Sandbox, assert_code, doctor_check as check};

#[track_caller]
fn verdict(report: &Value, id: &str) -> String {
    check(report, id)["verdict"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or("").to_string()
}

/// A foreign architecture of this host (its emulator from qemu-user-static), its OCI
/// platform and its ELF e_machine: the tests hold on an arm64 host too.
const FOREIGN: &str = if cfg!(target_arch = "aarch64") {
    "x86_64"
} else {
    "aarch64"
};
const FOREIGN_PLATFORM: &str = if cfg!(target_arch = "aarch64") {
    "linux/amd64"
} else {
    "linux/arm64"
};
const FOREIGN_MACHINE: u16 = if cfg!(target_arch = "aarch64") {
    62
} else {
    183
};

fn qemu(arch: &str) -> Option<String> {
    let p = format!("/usr/bin/qemu-{arch}-static");
    Path::new(&p).exists().then_some(p)
}

#[test]
fn binfmt_misc_not_mounted_or_disabled_fails_with_the_fix() {
    require_sandbox!();
    let sb = Sandbox::new();
    let (out, r) = sb.archctl_json(&["doctor"]);
    assert_code(&out, 1);
    let c = check(&r, "binfmt_misc");
    assert_eq!(c["verdict"], "fail", "{c}");
    assert!(text(c, "finding").contains("not mounted"), "{c}");
    assert!(text(c, "fix").contains("mount -t binfmt_misc"), "{c}");
    assert!(
        out.stderr().contains("archctl: error: doctor: "),
        "{}",
        out.shown()
    );
    // Mounted, then disabled.
    let sb = Sandbox::mounted();
    let (out, r) = sb.archctl_json(&["doctor"]);
    assert_eq!(verdict(&r, "binfmt_misc"), "ok", "{}", out.shown());
    sb.sh(&format!("echo 0 > '{}/status'", sb.dir.display()));
    let (out, r) = sb.archctl_json(&["doctor"]);
    assert_code(&out, 1);
    let c = check(&r, "binfmt_misc");
    assert_eq!(c["verdict"], "fail", "{c}");
    assert_eq!(
        text(c, "fix"),
        format!("echo 1 > {}/status", sb.dir.display())
    );
}

#[test]
fn a_user_namespace_is_said_not_to_reach_the_host() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    let (_, r) = sb.archctl_json(&["doctor"]);
    let c = check(&r, "user-namespace");
    assert_eq!(c["verdict"], "warn", "{c}");
    assert!(
        text(c, "finding").contains("does not reach the host"),
        "{c}"
    );
    // The test itself runs in the initial user namespace (as root in CI).
    let initial = std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
    skip_unless!(
        initial,
        "the tests do not run in the initial user namespace"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(ARCHCTL)
        .args(["--json", "doctor", "--binfmt-dir"])
        .arg(tmp.path())
        .run();
    let r = out.json();
    assert_eq!(verdict(&r, "user-namespace"), "ok", "{}", out.shown());
    // And the kernel check knows 6.7+ gives private instances (the sandbox needs it).
    assert!(text(check(&r, "kernel"), "finding").contains("per user namespace"));
}

#[test]
fn each_entry_is_proven_and_its_flags_and_shadows_named() {
    require_sandbox!();
    skip_unless!(
        qemu(FOREIGN).is_some(),
        "no /usr/bin/qemu-{FOREIGN}-static (qemu-user-static)"
    );
    let emu = qemu(FOREIGN).unwrap_or_default();
    let sb = Sandbox::mounted();
    let out = sb.archctl(&["enable", FOREIGN]);
    assert_code(&out, 0);
    let (out, r) = sb.archctl_json(&["doctor"]);
    let c = check(&r, &format!("entry:qemu-{FOREIGN}"));
    assert_eq!(c["verdict"], "ok", "{}", out.shown());
    assert!(text(c, "finding").contains("proven"), "{c}");

    // Without F: proven, but containers and chroots would fail.
    let rule = archctl::arch::Table::builtin().get(FOREIGN).unwrap();
    let esc = archctl::arch::escape_bytes;
    sb.sh(&format!("echo -1 > '{}/qemu-{FOREIGN}'", sb.dir.display()));
    sb.register_raw(&format!(
        ":qemu-{FOREIGN}:M::{}:{}:{emu}:",
        esc(&rule.magic),
        esc(&rule.mask)
    ));
    let (_, r) = sb.archctl_json(&["doctor"]);
    let c = check(&r, &format!("entry:qemu-{FOREIGN}"));
    assert_eq!(c["verdict"], "warn", "{c}");
    assert!(text(c, "finding").contains("without F"), "{c}");
    assert_eq!(text(c, "fix"), format!("archctl enable {FOREIGN} --force"));

    // A newer entry for the same architecture shadows it: the kernel tries the newest
    // first. The newer one is broken (its interpreter is /bin/false), so the test
    // program through "the one the kernel uses" fails — which proves which one it is.
    sb.register_raw(&format!(
        ":broken:M::{}:{}:/bin/false:",
        esc(&rule.magic),
        esc(&rule.mask)
    ));
    let (out, r) = sb.archctl_json(&["doctor"]);
    assert_code(&out, 1);
    let shadowed = check(&r, &format!("entry:qemu-{FOREIGN}"));
    assert_eq!(shadowed["verdict"], "warn", "{shadowed}");
    assert!(
        text(shadowed, "finding").contains("shadowed: broken"),
        "{shadowed}"
    );
    let broken = check(&r, "entry:broken");
    assert_eq!(broken["verdict"], "fail", "{broken}");
    assert!(
        text(broken, "finding").contains("test program failed"),
        "{broken}"
    );
    assert!(
        text(broken, "fix").contains(&format!("archctl enable {FOREIGN} --force")),
        "{broken}"
    );

    // Disabled: the kernel skips it, and the fix says how to enable it.
    sb.sh(&format!("echo 0 > '{}/broken'", sb.dir.display()));
    let (out, r) = sb.archctl_json(&["doctor"]);
    let broken = check(&r, "entry:broken");
    assert_eq!(broken["verdict"], "warn", "{}", out.shown());
    assert_eq!(
        text(broken, "fix"),
        format!("echo 1 > {}/broken", sb.dir.display())
    );
    // ...and qemu-aarch64 serves again.
    assert!(
        text(check(&r, &format!("entry:qemu-{FOREIGN}")), "finding").contains("proven"),
        "{r:#}"
    );
}

#[test]
fn an_interpreter_that_is_not_a_static_emulator_is_a_warning() {
    require_sandbox!();
    skip_unless!(
        qemu(FOREIGN).is_some(),
        "no /usr/bin/qemu-{FOREIGN}-static (qemu-user-static)"
    );
    // A wrapper script as the interpreter (registered with F): it works here, where
    // /bin/sh exists, but not in a container or chroot without a shell.
    let sb = Sandbox::mounted();
    let wrapper = sb.tmp.path().join("qemu-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} \"$@\"\n",
            qemu(FOREIGN).unwrap_or_default()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    sb.register_rule(
        &format!("qemu-{FOREIGN}"),
        FOREIGN,
        wrapper.to_str().unwrap(),
    );
    let (out, r) = sb.archctl_json(&["doctor"]);
    let c = check(&r, &format!("entry:qemu-{FOREIGN}"));
    assert_eq!(c["verdict"], "warn", "{}", out.shown());
    assert!(text(c, "finding").contains("proven"), "{c}");
    assert!(
        text(c, "finding").contains(wrapper.to_str().unwrap()),
        "{c}"
    );
    assert_eq!(text(c, "fix"), format!("archctl enable {FOREIGN} --force"));
}

#[test]
fn an_entry_for_a_native_architecture_is_named() {
    require_sandbox!();
    // On x86-64, i386 programs run natively; an entry for them sends them to qemu.
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped: i386 is native only on an x86_64 host");
        return;
    }
    skip_unless!(
        qemu("i386").is_some(),
        "no /usr/bin/qemu-i386-static (qemu-user-static)"
    );
    let sb = Sandbox::mounted();
    sb.register_rule("qemu-i386", "i386", &qemu("i386").unwrap_or_default());
    let (out, r) = sb.archctl_json(&["doctor"]);
    let c = check(&r, "entry:qemu-i386");
    assert_eq!(c["verdict"], "warn", "{}", out.shown());
    assert!(text(c, "finding").contains("runs natively here"), "{c}");
    assert_eq!(
        text(c, "fix"),
        format!("echo -1 > {}/qemu-i386", sb.dir.display())
    );
}

/// Run doctor in `sb` with `dir` bind-mounted (in the sandbox's own mount namespace) over
/// each of `targets`, which must exist on the host.
fn with_binds(sb: &Sandbox, binds: &[(&Path, &str)]) {
    for (src, target) in binds {
        let out = sb.sh(&format!("mount --bind '{}' '{target}'", src.display()));
        assert!(out.status.success(), "{}", out.shown());
    }
}

#[test]
fn binfmt_d_files_without_f_or_replacing_an_entry_are_named() {
    require_sandbox!();
    skip_unless!(
        qemu(FOREIGN).is_some(),
        "no /usr/bin/qemu-{FOREIGN}-static (qemu-user-static)"
    );
    let present: Vec<&str> = ["/etc/binfmt.d", "/usr/lib/binfmt.d"]
        .into_iter()
        .filter(|d| Path::new(d).is_dir())
        .collect();
    skip_unless!(
        present.len() == 2,
        "needs /etc/binfmt.d and /usr/lib/binfmt.d to bind over"
    );
    let sb = Sandbox::mounted();
    let empty = tempfile::tempdir().unwrap();
    let lib = tempfile::tempdir().unwrap();
    let rule = archctl::arch::Table::builtin().get(FOREIGN).unwrap();
    let esc = archctl::arch::escape_bytes;
    // Debian's name, another interpreter, no F.
    std::fs::write(
        lib.path().join(format!("qemu-{FOREIGN}.conf")),
        format!(
            ":qemu-{FOREIGN}:M::{}:{}:/usr/libexec/qemu-binfmt/{FOREIGN}-binfmt-P:PO\n",
            esc(&rule.magic),
            esc(&rule.mask)
        ),
    )
    .unwrap();
    std::fs::write(
        lib.path().join("python3.conf"),
        ":python3:M::\\x55\\x0d\\x0d\\x0a::/usr/bin/python3:\n",
    )
    .unwrap();
    with_binds(
        &sb,
        &[
            (empty.path(), "/etc/binfmt.d"),
            (lib.path(), "/usr/lib/binfmt.d"),
        ],
    );
    assert_code(&sb.archctl(&["enable", FOREIGN]), 0);
    let (out, r) = sb.archctl_json(&["doctor"]);
    let c = check(&r, "binfmt.d");
    assert_eq!(c["verdict"], "warn", "{}", out.shown());
    let f = text(c, "finding");
    assert!(
        f.contains("registers 1 emulators"),
        "python is not an emulator: {c}"
    );
    assert!(
        f.contains(&format!(
            "qemu-{FOREIGN} (/usr/lib/binfmt.d/qemu-{FOREIGN}.conf) has no F"
        )),
        "{c}"
    );
    assert!(
        f.contains(&format!("replaces the registered qemu-{FOREIGN}")),
        "{c}"
    );
    // Fixed: F, and the interpreter archctl registered.
    std::fs::write(
        lib.path().join(format!("qemu-{FOREIGN}.conf")),
        format!(
            ":qemu-{FOREIGN}:M::{}:{}:{}:F\n",
            esc(&rule.magic),
            esc(&rule.mask),
            qemu(FOREIGN).unwrap_or_default()
        ),
    )
    .unwrap();
    let (out, r) = sb.archctl_json(&["doctor"]);
    assert_eq!(verdict(&r, "binfmt.d"), "ok", "{}", out.shown());
}

#[test]
fn a_boot_service_running_a_missing_binary_fails() {
    require_sandbox!();
    // The service files of this machine's init system, replaced in the sandbox's own
    // mount namespace: the host's stay as they are.
    let unit_dir = Path::new("/etc/systemd/system");
    let systemd = [
        "/run/systemd/system",
        "/usr/lib/systemd/systemd",
        "/lib/systemd/systemd",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    skip_unless!(
        systemd && unit_dir.is_dir(),
        "needs a systemd host (/etc/systemd/system)"
    );
    let sb = Sandbox::mounted();
    let etc = tempfile::tempdir().unwrap();
    with_binds(&sb, &[(etc.path(), "/etc/systemd/system")]);
    // A package's unit (archctl's .deb installed on this host) would count as the
    // service: hidden the same way.
    let lib = tempfile::tempdir().unwrap();
    for packaged in ["/usr/lib/systemd/system", "/lib/systemd/system"] {
        if Path::new(packaged).join("archctl.service").exists() {
            with_binds(&sb, &[(lib.path(), packaged)]);
        }
    }
    let (_, r) = sb.archctl_json(&["doctor"]);
    let c = check(&r, "boot-service");
    assert_eq!(c["verdict"], "warn", "{c}");
    assert_eq!(text(c, "fix"), "archctl service install");
    // Installed by this archctl (inside the sandbox: the bind mount takes the files).
    let out = sb.archctl(&["service", "install"]);
    assert_code(&out, 0);
    assert!(etc.path().join("archctl.service").exists());
    let (out, r) = sb.archctl_json(&["doctor"]);
    assert_eq!(verdict(&r, "boot-service"), "ok", "{}", out.shown());
    // Its binary gone (a unit from an archctl that was moved or deleted).
    let unit = etc.path().join("archctl.service");
    let t = std::fs::read_to_string(&unit).unwrap();
    let gone = t.replace(
        &format!("ExecStart={ARCHCTL}"),
        "ExecStart=/nonexistent/archctl",
    );
    assert_ne!(t, gone, "{t}");
    std::fs::write(&unit, gone).unwrap();
    let (out, r) = sb.archctl_json(&["doctor"]);
    assert_code(&out, 1);
    let c = check(&r, "boot-service");
    assert_eq!(c["verdict"], "fail", "{c}");
    assert!(
        text(c, "finding").contains("/nonexistent/archctl, which does not exist"),
        "{c}"
    );
    // Not ordered after systemd-binfmt (which flushes every entry when it starts).
    std::fs::write(&unit, t.replace("systemd-binfmt.service", "")).unwrap();
    let (_, r) = sb.archctl_json(&["doctor"]);
    let c = check(&r, "boot-service");
    assert_eq!(c["verdict"], "fail", "{c}");
    assert!(text(c, "finding").contains("flushes every entry"), "{c}");
    // Not before docker.service: containers started at boot may find no emulator.
    std::fs::write(&unit, t.replace("docker.service", "")).unwrap();
    let (_, r) = sb.archctl_json(&["doctor"]);
    let c = check(&r, "boot-service");
    assert_eq!(c["verdict"], "warn", "{c}");
    assert!(
        text(c, "finding").contains("not ordered before docker.service"),
        "{c}"
    );
    // Not enabled: the unit is there, its wants link is not.
    std::fs::write(&unit, &t).unwrap();
    let wants = etc.path().join("multi-user.target.wants/archctl.service");
    std::fs::remove_file(&wants).unwrap();
    let (_, r) = sb.archctl_json(&["doctor"]);
    let c = check(&r, "boot-service");
    assert_eq!(c["verdict"], "warn", "{c}");
    assert_eq!(text(c, "fix"), "systemctl enable archctl.service");
}

#[test]
fn an_engine_that_does_not_answer_is_a_warning_with_the_fix() {
    let docker = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("docker").is_file()));
    skip_unless!(docker, "no docker CLI on PATH (docker.io)");
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(ARCHCTL)
        .args(["--json", "doctor", "--binfmt-dir"])
        .arg(tmp.path())
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no.sock", tmp.path().display()),
        )
        .run();
    let r = out.json();
    let c = check(&r, "engine:docker");
    assert_eq!(c["verdict"], "warn", "{}", out.shown());
    assert!(text(c, "finding").contains("docker info"), "{c}");
    assert!(text(c, "fix").contains("start the daemon"), "{c}");
}

#[test]
fn doctor_file_says_whether_and_through_what_this_host_runs_it() {
    require_sandbox!();
    skip_unless!(
        qemu(FOREIGN).is_some(),
        "no /usr/bin/qemu-{FOREIGN}-static (qemu-user-static)"
    );
    let sb = Sandbox::mounted();
    let prog = sb.program_file(FOREIGN);
    let p = prog.to_str().unwrap();
    let (out, r) = sb.archctl_json(&["doctor", p]);
    assert_code(&out, 1);
    assert_eq!(r["elf"]["machine"], "AARCH64", "{r:#}");
    assert_eq!(r["elf"]["bits"], 64);
    assert_eq!(r["elf"]["little_endian"], true);
    assert_eq!(r["elf"]["interpreter"], Value::Null);
    let c = check(&r, "runs-here");
    assert_eq!(c["verdict"], "fail", "{c}");
    assert!(text(c, "finding").contains("exec format error"), "{c}");
    assert_eq!(text(c, "fix"), format!("archctl enable {FOREIGN}"));
    assert_code(&sb.archctl(&["enable", FOREIGN]), 0);
    let (out, r) = sb.archctl_json(&["doctor", p]);
    assert_code(&out, 0);
    let c = check(&r, "runs-here");
    assert!(
        text(c, "finding").contains(&format!("runs emulated, through qemu-{FOREIGN}")),
        "{c}"
    );
    // The host's own.
    let native = sb.program_file(std::env::consts::ARCH);
    let (_, r) = sb.archctl_json(&["doctor", native.to_str().unwrap()]);
    assert!(
        text(check(&r, "runs-here"), "finding").contains("runs natively"),
        "{r:#}"
    );
}

/// A minimal 64-bit little-endian ELF executable header for `machine`, with a PT_INTERP
/// naming `interp` and, when `isa_needed` is set, a PT_GNU_PROPERTY note saying the
/// x86 ISA level bitmask it needs.
fn elf_with(machine: u16, interp: &str, isa_needed: Option<u32>) -> Vec<u8> {
    let phnum: u16 = if isa_needed.is_some() { 2 } else { 1 };
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // ELFCLASS64
    b[5] = 1; // little-endian
    b[6] = 1; // EV_CURRENT
    b[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b[18..20].copy_from_slice(&machine.to_le_bytes());
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    b[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    b[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    b[56..58].copy_from_slice(&phnum.to_le_bytes());
    let data = 64 + 56 * u64::from(phnum);
    let mut interp_bytes = interp.as_bytes().to_vec();
    interp_bytes.push(0);
    let note_off = data + interp_bytes.len() as u64;
    let note_off = note_off.div_ceil(8) * 8;
    let phdr = |t: u32, off: u64, len: u64| {
        let mut p = vec![0u8; 56];
        p[..4].copy_from_slice(&t.to_le_bytes());
        p[4..8].copy_from_slice(&4u32.to_le_bytes());
        p[8..16].copy_from_slice(&off.to_le_bytes());
        p[32..40].copy_from_slice(&len.to_le_bytes());
        p[40..48].copy_from_slice(&len.to_le_bytes());
        p
    };
    b.extend(phdr(3, data, interp_bytes.len() as u64)); // PT_INTERP
    let mut note = Vec::new();
    if let Some(mask) = isa_needed {
        note.extend(4u32.to_le_bytes());
        note.extend(16u32.to_le_bytes());
        note.extend(5u32.to_le_bytes());
        note.extend(b"GNU\0");
        note.extend(0xc000_8002u32.to_le_bytes());
        note.extend(4u32.to_le_bytes());
        note.extend(mask.to_le_bytes());
        note.extend([0u8; 4]);
        b.extend(phdr(0x6474_e553, note_off, note.len() as u64));
    }
    b.extend(&interp_bytes);
    b.resize(note_off as usize, 0);
    b.extend(note);
    b
}

fn write_exe(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

#[test]
fn doctor_file_names_a_missing_loader_and_an_isa_level_beyond_the_cpu() {
    require_sandbox!();
    skip_unless!(
        qemu(FOREIGN).is_some(),
        "no /usr/bin/qemu-{FOREIGN}-static (qemu-user-static)"
    );
    let sb = Sandbox::mounted();
    assert_code(&sb.archctl(&["enable", FOREIGN]), 0);
    // A dynamically linked arm64 program whose loader is not on this host.
    let dynamic = write_exe(
        sb.tmp.path(),
        "dyn",
        &elf_with(FOREIGN_MACHINE, "/lib/ld-foreign.so.99", None),
    );
    let (out, r) = sb.archctl_json(&["doctor", &dynamic]);
    assert_eq!(
        r["elf"]["interpreter"],
        "/lib/ld-foreign.so.99",
        "{}",
        out.shown()
    );
    let c = check(&r, "runs-here");
    assert_eq!(c["verdict"], "warn", "{c}");
    assert!(
        text(c, "finding").contains("needs /lib/ld-foreign.so.99"),
        "{c}"
    );
    assert!(
        text(c, "fix").contains(&format!("--platform {FOREIGN_PLATFORM}")),
        "{c}"
    );
    // An x86-64 program that needs a level above this CPU's.
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped the ISA-level half: it needs an x86_64 host");
        return;
    }
    let level = archctl::cpu::host_amd64_level().unwrap_or(1);
    let v4 = write_exe(
        sb.tmp.path(),
        "v4",
        &elf_with(62, "/lib64/ld-linux-x86-64.so.2", Some(0b1111)),
    );
    let (out, r) = sb.archctl_json(&["doctor", &v4]);
    assert_eq!(r["elf"]["x86_isa_needed"], 4, "{}", out.shown());
    let c = check(&r, "runs-here");
    if level < 4 {
        assert_eq!(c["verdict"], "fail", "{c}");
        assert!(
            text(c, "finding")
                .contains(&format!("needs x86-64-v4 and this CPU is x86-64-v{level}")),
            "{c}"
        );
        assert_code(&out, 1);
    } else {
        assert_eq!(c["verdict"], "ok", "{c}");
        eprintln!("skipped the level-too-high half: this CPU is x86-64-v4");
    }
}

#[test]
fn doctor_file_refuses_what_is_not_an_executable_without_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("script");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let fifo = tmp.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for (p, want) in [
        (script.as_path(), "is not an ELF executable"),
        (fifo.as_path(), "not a regular file"),
        (tmp.path().join("missing").as_path(), "No such file"),
    ] {
        let out = std::process::Command::new(ARCHCTL)
            .args(["--json", "doctor", "--binfmt-dir"])
            .arg(tmp.path())
            .arg(p)
            .run();
        assert_code(&out, 1);
        let r = out.json();
        let c = check(&r, "elf");
        assert_eq!(c["verdict"], "fail", "{c}");
        assert!(text(c, "finding").contains(want), "{c}");
    }
}
