//! The edge: exit codes decided by meaning, and global options every command honours.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::{ARCHCTL, Run, RunExt, assert_code, assert_error_line};

const FOREIGN: &str = if cfg!(target_arch = "aarch64") {
    "riscv64"
} else {
    "aarch64"
};

fn archctl(argv: &[&str], path: Option<&str>) -> Run {
    let mut c = Command::new(ARCHCTL);
    c.args(argv).env_remove("ARCHCTL_ENGINE");
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c.run()
}

#[test]
fn a_missing_container_engine_is_a_failure_not_a_usage_error() {
    let empty = tempfile::tempdir().unwrap();
    let argv = ["run", "--dry-run", "--platform", "linux/amd64", "alpine"];
    let o = archctl(&argv, Some(empty.path().to_str().unwrap()));
    assert_code(&o, 1);
    assert_error_line(&o, "no container engine found");
    assert!(o.stderr().contains("\nhint: "), "{}", o.shown());
}

#[test]
fn what_the_user_wrote_wrong_stays_a_usage_error() {
    for argv in [
        &["run", "--engine", "rkt", "--dry-run", "alpine"][..],
        &["pick", "--host-platform", "linux", "alpine"][..],
        &["enable", "no-such-arch", "--dry-run"][..],
        &["enable", "--bogus"][..],
    ] {
        let o = archctl(argv, None);
        assert_code(&o, 2);
        assert!(o.stderr().starts_with("archctl: error: "), "{}", o.shown());
    }
}

/// `exec` mounts its private instance where `--binfmt-dir` says (inside its own mount
/// namespace), and registers there.
#[test]
fn exec_honours_the_global_binfmt_dir() {
    require_sandbox!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = archctl(
        &["--binfmt-dir", d, "exec", "--arch", FOREIGN, "--", "ls", d],
        None,
    );
    assert_code(&o, 0);
    let out = o.stdout();
    let names: Vec<&str> = out.lines().collect();
    assert!(names.contains(&"register"), "{}", o.shown());
    let entry = format!("qemu-{FOREIGN}");
    assert!(names.contains(&entry.as_str()), "{}", o.shown());
    // Outside the namespace the directory is untouched.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // A directory that is not there is named, before any namespace is entered.
    let o = archctl(
        &[
            "--binfmt-dir",
            "/nonexistent/x",
            "exec",
            "--arch",
            FOREIGN,
            "--",
            "true",
        ],
        None,
    );
    assert_code(&o, 2);
    assert_error_line(&o, "--binfmt-dir /nonexistent/x: not a directory");
}
