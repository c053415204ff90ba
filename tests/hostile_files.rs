//! Hostile files and numbers (issue #11, classes 5 and 6): a FIFO, a device or a
//! directory where archctl expects a file must be a clear error, never a hang or an
//! unbounded read; an out-of-range number is a usage error before anything is touched.
//! Every run that could hang has a deadline, and the test fails (after killing it) when
//! archctl does not end by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use support::{ARCHCTL, Run, Sandbox, assert_code, assert_error_line, stderr};

/// A foreign target that every Debian qemu-user-static has and this host does not run.
const FOREIGN: &str = if cfg!(target_arch = "aarch64") {
    "riscv64"
} else {
    "aarch64"
};

/// Long enough for any run that does not hang on this shared VM; a hang never ends.
const DEADLINE: Duration = Duration::from_secs(30);

/// The address space a run may have: far above what archctl needs, far below what an
/// unbounded read of /dev/zero reaches before the deadline.
const MEMORY_LIMIT: &str = "--as=1073741824";

/// Run `cmd` to completion within [`DEADLINE`]; when it does not end by itself, kill it
/// and fail the test (it hung).
#[track_caller]
fn run_with_deadline(cmd: &mut Command) -> Run {
    let argv: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(output) => Run {
            argv,
            output: output.unwrap(),
        },
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let killed = rx.recv_timeout(Duration::from_secs(10));
            let err = killed
                .ok()
                .and_then(Result::ok)
                .map(|o| stderr(&o))
                .unwrap_or_default();
            panic!("{argv:?} hung: still running after {DEADLINE:?}, killed\nstderr: {err}");
        }
    }
}

/// archctl inside `sb` (its --binfmt-dir and runtime directory), under the memory limit.
fn in_sandbox(sb: &Sandbox, args: &[&str]) -> Command {
    let mut c = sb.command("prlimit");
    c.arg(MEMORY_LIMIT)
        .arg("--")
        .arg(ARCHCTL)
        .env("ARCHCTL_RUNTIME_DIR", sb.runtime_dir())
        .arg("--binfmt-dir")
        .arg(&sb.dir)
        .args(args);
    c
}

/// archctl on the host, under the memory limit (for commands that touch no table).
fn on_host(args: &[&str]) -> Command {
    let mut c = Command::new("prlimit");
    c.arg(MEMORY_LIMIT).arg("--").arg(ARCHCTL).args(args);
    c
}

fn mkfifo(path: &Path) -> PathBuf {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    path.to_path_buf()
}

/// The sandbox's binfmt_misc holds no entry: the run registered nothing.
#[track_caller]
fn assert_untouched(sb: &Sandbox, out: &Run) {
    assert!(
        sb.entries().is_empty(),
        "{:?}\n{}",
        sb.snapshot(),
        out.shown()
    );
}

#[test]
fn a_fifo_as_emulator_is_an_error_not_a_hang() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    let fifo = mkfifo(&sb.tmp.path().join("qemu-fifo"));
    let f = fifo.to_str().unwrap();
    for args in [
        vec!["enable", FOREIGN, "--emulator", f],
        vec!["enable", FOREIGN, "--emulator", f, "--dry-run"],
        vec!["exec", "--arch", FOREIGN, "--emulator", f, "--", "true"],
    ] {
        let out = run_with_deadline(&mut in_sandbox(&sb, &args));
        assert_code(&out, 1);
        assert_error_line(
            &out,
            &format!("{f}: is a FIFO (named pipe), not a regular file"),
        );
        assert!(stderr(&out).contains("hint: "), "{}", out.shown());
        assert_untouched(&sb, &out);
    }
    // A device and a directory are named as what they are.
    for (p, what) in [
        ("/dev/zero", "a character device"),
        (sb.tmp.path().to_str().unwrap(), "a directory"),
    ] {
        let out = run_with_deadline(&mut in_sandbox(&sb, &["enable", FOREIGN, "--emulator", p]));
        assert_code(&out, 1);
        assert_error_line(&out, &format!("{p}: is {what}, not a regular file"));
        assert_untouched(&sb, &out);
    }
}

#[test]
fn a_fifo_in_the_emulator_dir_is_an_error_not_a_hang() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    let dir = sb.tmp.path().join("emulators");
    std::fs::create_dir(&dir).unwrap();
    let fifo = mkfifo(&dir.join(format!("qemu-{FOREIGN}-static")));
    let d = dir.to_str().unwrap();
    let out = run_with_deadline(&mut in_sandbox(
        &sb,
        &["enable", FOREIGN, "--emulator-dir", d],
    ));
    assert_code(&out, 1);
    assert_error_line(
        &out,
        &format!(
            "{}: is a FIFO (named pipe), not a regular file",
            fifo.display()
        ),
    );
    assert_untouched(&sb, &out);
    // `boot` with the directory in its configuration finishes too, and registers no
    // entry for that architecture.
    let cfg = sb.tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("[binfmt]\narchitectures = [\"{FOREIGN}\"]\nemulator_dir = \"{d}\"\n"),
    )
    .unwrap();
    let out = run_with_deadline(&mut in_sandbox(
        &sb,
        &["--json", "--config", cfg.to_str().unwrap(), "boot"],
    ));
    assert_ne!(out.status.code(), Some(0), "{}", out.shown());
    assert!(
        out.stdout().contains("not a regular file") || out.stderr().contains("not a regular file"),
        "{}",
        out.shown()
    );
    assert!(
        sb.entry(&format!("qemu-{FOREIGN}")).is_none(),
        "{}",
        out.shown()
    );
}

#[test]
fn a_special_file_as_config_is_an_error_for_boot_and_config_show() {
    require_sandbox!();
    let sb = Sandbox::new();
    let fifo = mkfifo(&sb.tmp.path().join("config.fifo"));
    let dir = sb.tmp.path().join("config.d");
    std::fs::create_dir(&dir).unwrap();
    let cases = [
        (fifo.to_str().unwrap(), "a FIFO (named pipe)"),
        ("/dev/zero", "a character device"),
        (dir.to_str().unwrap(), "a directory"),
    ];
    for (path, what) in cases {
        let line = format!("config {path}: is {what}, not a regular file");
        let out = run_with_deadline(&mut in_sandbox(&sb, &["--config", path, "boot"]));
        assert_code(&out, 1);
        assert_error_line(&out, &line);
        assert!(stderr(&out).contains("hint: "), "{}", out.shown());
        // Refused before binfmt_misc is even mounted.
        assert!(!sb.is_mounted(), "{}", out.shown());
        let out = run_with_deadline(&mut on_host(&["--config", path, "config", "show"]));
        assert_code(&out, 1);
        assert_error_line(&out, &line);
        // ARCHCTL_CONFIG is read the same way.
        let out = run_with_deadline(on_host(&["config", "show"]).env("ARCHCTL_CONFIG", path));
        assert_code(&out, 1);
        assert_error_line(&out, &line);
    }
}

#[test]
fn a_config_file_over_the_cap_is_an_error_not_a_flood() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("config.toml");
    // Valid TOML (a comment) just over 1 MiB.
    let mut text = b"# ".to_vec();
    text.resize((1 << 20) + 1, b'x');
    std::fs::write(&big, &text).unwrap();
    let p = big.to_str().unwrap();
    let out = run_with_deadline(&mut on_host(&["--config", p, "config", "show"]));
    assert_code(&out, 1);
    assert_error_line(
        &out,
        &format!("config {p}: larger than 1 MiB, the most archctl reads of it"),
    );
    // At the cap it is read.
    text.truncate(1 << 20);
    std::fs::write(&big, &text).unwrap();
    let out = run_with_deadline(&mut on_host(&["--config", p, "config", "show"]));
    assert_code(&out, 0);
}

#[test]
fn status_reports_an_interpreter_that_is_a_fifo_and_finishes() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    let fifo = mkfifo(&sb.tmp.path().join("interp.fifo"));
    let rule = archctl::arch::Table::builtin().get(FOREIGN).unwrap();
    let esc = archctl::arch::escape_bytes;
    // Without F the kernel does not open the interpreter at registration: any path goes.
    sb.register_raw(&format!(
        ":qemu-{FOREIGN}:M::{}:{}:{}:",
        esc(&rule.magic),
        esc(&rule.mask),
        fifo.display()
    ));
    let out = run_with_deadline(&mut in_sandbox(&sb, &["--json", "status"]));
    assert_code(&out, 0);
    let v = out.json();
    let e = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == format!("qemu-{FOREIGN}"))
        .unwrap_or_else(|| panic!("entry not listed\n{}", out.shown()));
    assert_eq!(e["interpreter_ok"], false, "{e}");
    assert_eq!(
        e["interpreter_problem"],
        format!(
            "{}: is a FIFO (named pipe), not a regular file",
            fifo.display()
        ),
        "{e}"
    );
    // The human listing says it too.
    let out = run_with_deadline(&mut in_sandbox(&sb, &["status"]));
    assert_code(&out, 0);
    assert!(out.stdout().contains("is a FIFO"), "{}", out.shown());
    // `enable` looks at the same entry (is it equivalent?): a conflict that names the
    // interpreter, found without blocking, and nothing written.
    let before = sb.snapshot();
    let out = run_with_deadline(&mut in_sandbox(&sb, &["enable", FOREIGN]));
    assert_code(&out, 1);
    assert_error_line(&out, &format!("interpreter {}", fifo.display()));
    assert_eq!(sb.snapshot(), before, "{}", out.shown());
}

#[test]
fn out_of_range_numbers_are_usage_errors_before_anything_is_touched() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    // Something in the table, so "unchanged" means something.
    let prog = sb.program_file(FOREIGN);
    sb.register_raw(&format!(":archctl-test-x:E::xyz::{}:", prog.display()));
    let before = sb.snapshot();
    assert_eq!(before.len(), 1, "{before:?}");
    let huge = "9223372036854775807";
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["enable", FOREIGN, "--timeout", huge],
            "--timeout",
            "1..=3600",
        ),
        (
            vec!["enable", FOREIGN, "--timeout", "0"],
            "--timeout",
            "1..=3600",
        ),
        (
            vec!["enable", FOREIGN, "--timeout", "3601"],
            "--timeout",
            "1..=3600",
        ),
        (vec!["enable", FOREIGN, "--timeout=-1"], "--timeout", ""),
        (vec!["enable", FOREIGN, "--timeout", "1e3"], "--timeout", ""),
        (
            vec!["enable", "--all", "--timeout", "18446744073709551616"],
            "--timeout",
            "",
        ),
        (
            vec!["test", FOREIGN, "--timeout", huge],
            "--timeout",
            "1..=3600",
        ),
        (vec!["test", "--timeout", "0"], "--timeout", "1..=3600"),
        (
            vec![
                "emulators",
                "install",
                "--from",
                "/nonexistent.tar.gz",
                "--sha256",
                "00",
                "--timeout",
                huge,
            ],
            "--timeout",
            "1..=3600",
        ),
        (
            vec!["inspect", "alpine", "--timeout", huge],
            "--timeout",
            "1..=3600",
        ),
        (
            vec!["inspect", "alpine", "--concurrency", "0"],
            "--concurrency",
            "1..=256",
        ),
        (
            vec!["inspect", "alpine", "--concurrency", "257"],
            "--concurrency",
            "1..=256",
        ),
        (
            vec!["pick", "alpine", "--timeout", "0"],
            "--timeout",
            "1..=3600",
        ),
    ];
    for (args, flag, range) in cases {
        let out = run_with_deadline(&mut in_sandbox(&sb, &args));
        assert_code(&out, 2);
        assert_error_line(&out, flag);
        assert_error_line(&out, range);
        assert_eq!(sb.snapshot(), before, "{}", out.shown());
    }
    // The edges of the range are accepted (and the table changed as asked).
    let out = run_with_deadline(&mut in_sandbox(
        &sb,
        &["enable", FOREIGN, "--timeout", "3600"],
    ));
    assert_code(&out, 0);
    let out = run_with_deadline(&mut in_sandbox(&sb, &["test", FOREIGN, "--timeout", "1"]));
    assert_code(&out, 0);
}

#[test]
fn an_f_entry_whose_interpreter_path_became_a_fifo_is_reported_not_opened() {
    require_sandbox!();
    let emulator = format!("/usr/bin/qemu-{FOREIGN}-static");
    skip_unless!(Path::new(&emulator).exists(), "{emulator} not installed");
    let sb = Sandbox::mounted();
    // With F the kernel holds the file open; the path is then replaced by a FIFO.
    let interp = sb.tmp.path().join("qemu-copy");
    std::fs::copy(&emulator, &interp).unwrap();
    sb.register_rule(
        &format!("qemu-{FOREIGN}"),
        FOREIGN,
        interp.to_str().unwrap(),
    );
    std::fs::remove_file(&interp).unwrap();
    mkfifo(&interp);
    let out = run_with_deadline(&mut in_sandbox(&sb, &["--json", "status"]));
    assert_code(&out, 0);
    let v = out.json();
    let e = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == format!("qemu-{FOREIGN}"))
        .unwrap_or_else(|| panic!("entry not listed\n{}", out.shown()));
    assert_eq!(e["interpreter_ok"], false, "{e}");
    let problem = e["interpreter_problem"].as_str().unwrap_or_default();
    assert!(problem.contains("is a FIFO (named pipe)"), "{e}");
    // enable decides whether the entry is equivalent from the same file: not a hang, a
    // conflict naming what the interpreter is, and nothing written.
    let before = sb.snapshot();
    let out = run_with_deadline(&mut in_sandbox(&sb, &["enable", FOREIGN]));
    assert_code(&out, 1);
    assert_error_line(&out, "is a FIFO (named pipe), not a regular file");
    assert_eq!(sb.snapshot(), before, "{}", out.shown());
}

#[test]
fn config_init_never_replaces_a_special_file_even_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = mkfifo(&dir.path().join("config.fifo"));
    let sub = dir.path().join("config.d");
    std::fs::create_dir(&sub).unwrap();
    // A private null device node (as root), so a regression replaces only this node.
    let dev = dir.path().join("null");
    let made = nix::sys::stat::mknod(
        &dev,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    );
    let mut cases = vec![
        (fifo.clone(), "a FIFO (named pipe)"),
        (sub.clone(), "a directory"),
    ];
    match made {
        Ok(()) => cases.push((dev.clone(), "a character device")),
        Err(e) => eprintln!("not checked with a device node: mknod: {e} (not root?)"),
    }
    use std::os::unix::fs::FileTypeExt;
    for (p, what) in cases {
        let s = p.to_str().unwrap();
        for force in [false, true] {
            let mut args = vec!["config", "init", "--output", s];
            if force {
                args.push("--force");
            }
            let out = run_with_deadline(&mut on_host(&args));
            assert_code(&out, 1);
            assert_error_line(&out, &format!("config {s}: is {what}, not a regular file"));
            let t = std::fs::metadata(&p).unwrap().file_type();
            assert!(
                t.is_fifo() || t.is_dir() || t.is_char_device(),
                "{s} was replaced\n{}",
                out.shown()
            );
        }
    }
    // Only the three are in the directory: no temporary file was left behind.
    assert!(std::fs::read_dir(dir.path()).unwrap().count() <= 3);
}

#[test]
fn a_special_file_as_bundle_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = mkfifo(&dir.path().join("bundle.tar.gz"));
    let dest = dir.path().join("emulators");
    for (path, what) in [
        (fifo.to_str().unwrap(), "a FIFO (named pipe)"),
        ("/dev/zero", "a character device"),
    ] {
        let out = run_with_deadline(&mut on_host(&[
            "emulators",
            "install",
            "--from",
            path,
            "--sha256",
            &"0".repeat(64),
            "--dest",
            dest.to_str().unwrap(),
        ]));
        assert_code(&out, 1);
        assert_error_line(
            &out,
            &format!("{path}: is {what}, not a regular file; nothing was installed"),
        );
        assert!(!dest.exists(), "{}", out.shown());
    }
}
