//! `archctl exec`: emulation in a private user namespace, as root and as an unprivileged
//! user, never touching the host's binfmt_misc table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::RunExt;

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use support::{ARCHCTL, assert_code, assert_error_line, stdout};

const FOREIGN: &str = if cfg!(target_arch = "aarch64") {
    "riscv64"
} else {
    "aarch64"
};

/// The host's table, as far as this process can see it (empty when not mounted).
fn host_table() -> Vec<(String, String)> {
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let n = e.file_name().into_string().unwrap();
                    let t = std::fs::read_to_string(e.path()).unwrap_or_default();
                    (n, t)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A copy of archctl in a world-readable directory (ARCHCTL lives under target/, which
/// uid 65534 may not reach; the binary is self-contained).
fn world_executable_archctl(dir: &Path) -> std::path::PathBuf {
    let exe = dir.join("archctl");
    std::fs::copy(ARCHCTL, &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

/// Run as uid/gid 65534.
fn as_nobody(exe: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(exe);
    c
}

/// A world-readable directory with the foreign test program in it.
fn program_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = support::write_program(d.path(), FOREIGN);
    (d, p)
}

#[test]
fn exec_runs_foreign_program_without_touching_the_host() {
    require_sandbox!();
    let before = host_table();
    let (_d, prog) = program_dir();
    let out = Command::new(ARCHCTL)
        .args(["exec", "--arch", FOREIGN, "--"])
        .arg(&prog)
        .run();
    assert_code(&out, 0);
    assert_eq!(stdout(&out), format!("archctl-test {FOREIGN} ok\n"));
    // Several architectures, comma-separated, and a shell in between; the command keeps
    // the caller's uid and sees the private entries.
    let out = Command::new(ARCHCTL)
        .args([
            "exec",
            "--arch",
            &format!("{FOREIGN},s390x"),
            "--",
            "sh",
            "-c",
        ])
        .arg(format!(
            "id -u; ls /proc/sys/fs/binfmt_misc | grep -c qemu-; {}",
            prog.display()
        ))
        .run();
    assert_code(&out, 0);
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!(
        stdout(&out),
        format!("{uid}\n2\narchctl-test {FOREIGN} ok\n")
    );
    assert_eq!(host_table(), before, "exec changed the host's table");
}

#[test]
fn exec_works_for_an_unprivileged_user() {
    require_sandbox!();
    // When not root, the plain exec test already is the unprivileged case.
    skip_unless!(
        nix::unistd::getuid().is_root(),
        "not root, the unprivileged case is the plain exec test"
    );
    let (d, prog) = program_dir();
    let exe = world_executable_archctl(d.path());
    let out = as_nobody(&exe)
        .args(["exec", "--arch", FOREIGN, "--", "sh", "-c"])
        .arg(format!("id -u; {}", prog.display()))
        .run();
    assert_code(&out, 0);
    assert_eq!(stdout(&out), format!("65534\narchctl-test {FOREIGN} ok\n"));
}

#[test]
fn exec_bad_input() {
    require_sandbox!();
    let out = Command::new(ARCHCTL)
        .args(["exec", "--arch", "z80", "--", "true"])
        .run();
    assert_code(&out, 2);
    assert_error_line(&out, "unknown architecture \"z80\"");
    let out = Command::new(ARCHCTL)
        .args(["exec", "--arch", FOREIGN])
        .run();
    assert_code(&out, 2);
    let out = Command::new(ARCHCTL)
        .args([
            "exec",
            "--arch",
            FOREIGN,
            "--emulator",
            "/bin/true",
            "--",
            "true",
        ])
        .run();
    assert_code(&out, 1);
    assert_error_line(&out, "dynamically linked");
    let out = Command::new(ARCHCTL)
        .args(["exec", "--arch", FOREIGN, "--", "/nonexistent/cmd"])
        .run();
    assert_code(&out, 1);
    assert_error_line(&out, "/nonexistent/cmd");
}

#[test]
fn enable_without_privileges_fails_with_a_hint_and_changes_nothing() {
    require_sandbox!();
    skip_unless!(
        nix::unistd::getuid().is_root(),
        "needs root to drop to uid 65534"
    );
    let before = host_table();
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = world_executable_archctl(d.path());
    // Flags no entry archctl makes carries, and --force: a write is needed whether or not
    // the host's table already holds qemu-FOREIGN (the README's first command may have run).
    let out = as_nobody(&exe)
        .args(["enable", FOREIGN, "--force", "--flags", "OF"])
        .env("ARCHCTL_RUNTIME_DIR", d.path().join("run"))
        .run();
    assert_code(&out, 1);
    assert_error_line(&out, "permission denied");
    let err = support::stderr(&out);
    assert!(err.contains("hint: run it as root"), "{err}");
    assert!(err.contains("archctl exec"), "{err}");
    assert_eq!(host_table(), before);
}
