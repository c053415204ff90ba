//! The edge: exit codes decided by meaning, and global options every command honours.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

const ARCHCTL: &str = env!("CARGO_BIN_EXE_archctl");

const FOREIGN: &str = if cfg!(target_arch = "aarch64") {
    "riscv64"
} else {
    "aarch64"
};

fn show(argv: &[&str], o: &Output) -> String {
    format!(
        "archctl {}\nexit {:?}\nstdout:\n{}\nstderr:\n{}",
        argv.join(" "),
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn archctl(argv: &[&str], path: Option<&str>) -> Output {
    let mut c = Command::new(ARCHCTL);
    c.args(argv).env_remove("ARCHCTL_ENGINE");
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c.output().unwrap()
}

#[test]
fn a_missing_container_engine_is_a_failure_not_a_usage_error() {
    let empty = tempfile::tempdir().unwrap();
    let argv = ["run", "--dry-run", "--platform", "linux/amd64", "alpine"];
    let o = archctl(&argv, Some(empty.path().to_str().unwrap()));
    assert_eq!(o.status.code(), Some(1), "{}", show(&argv, &o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("archctl: error: no container engine found"),
        "{}",
        show(&argv, &o)
    );
    assert!(err.contains("hint: "), "{}", show(&argv, &o));
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
        assert_eq!(o.status.code(), Some(2), "{}", show(argv, &o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("archctl: error: "), "{}", show(argv, &o));
    }
}

/// `exec` mounts its private instance where `--binfmt-dir` says (inside its own mount
/// namespace), and registers there.
#[test]
fn exec_honours_the_global_binfmt_dir() {
    let release = archctl::ns::kernel_release();
    if !archctl::ns::kernel_at_least(&release, 6, 7) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs Linux 6.7+ (private binfmt_misc instances), this is {release}"
        );
        eprintln!("skipped: Linux {release} has no private binfmt_misc instances");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let argv = ["--binfmt-dir", d, "exec", "--arch", FOREIGN, "--", "ls", d];
    let o = archctl(&argv, None);
    assert_eq!(o.status.code(), Some(0), "{}", show(&argv, &o));
    let out = String::from_utf8_lossy(&o.stdout);
    let names: Vec<&str> = out.lines().collect();
    assert!(names.contains(&"register"), "{}", show(&argv, &o));
    assert!(
        names.contains(&format!("qemu-{FOREIGN}").as_str()),
        "{}",
        show(&argv, &o)
    );
    // Outside the namespace the directory is untouched.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
