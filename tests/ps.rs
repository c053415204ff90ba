//! `archctl ps`: real foreign programs running under archctl's entries, in private
//! binfmt_misc instances (with and without `P`) and in a container of a private dockerd
//! (host-wide registration, restored after), found with the right architecture, entry,
//! program, arguments and container.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use support::engine::{
    BINFMT, BinfmtGuard, Dockerd, PODMAN_ULIMITS, Podman, holders, podman_available, restorable,
};
use support::{ARCHCTL, RunExt, Sandbox, assert_code};

/// Host-wide registration, one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const FOREIGN: &str = if cfg!(target_arch = "aarch64") {
    "riscv64"
} else {
    "aarch64"
};

/// A static program of `arch` (aarch64 or riscv64) that blocks in `ppoll(NULL, 0, NULL,
/// NULL)` until a signal ends it: the test programs exit at once, and a process must
/// stay to be listed. Eight instructions (checked with binutils' objdump), zeroing the
/// arguments, the syscall number 73 (ppoll in both generic tables), the call, a branch
/// back to the start.
fn sleeper_bytes(arch: &str) -> Vec<u8> {
    let (machine, code): (u16, [u32; 8]) = match arch {
        "aarch64" => (
            183,
            [
                0xd2800000, 0xd2800001, 0xd2800002, 0xd2800003, 0xd2800004, // mov xN, #0
                0xd2800928, // mov x8, #73
                0xd4000001, // svc #0
                0x17fffff9, // b _start
            ],
        ),
        "riscv64" => (
            243,
            [
                0x00000513, 0x00000593, 0x00000613, 0x00000693, 0x00000713, // li aN, 0
                0x04900893, // li a7, 73
                0x00000073, // ecall
                0xfe5ff06f, // j _start
            ],
        ),
        other => panic!("no sleeper for {other}"),
    };
    let code: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
    let base: u64 = 0x400000;
    let off: u64 = 64 + 56;
    let size = off + code.len() as u64;
    let mut elf = Vec::new();
    // ELF header: 64-bit, little-endian, version 1, SysV; ET_EXEC.
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes());
    elf.extend_from_slice(&machine.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(base + off).to_le_bytes()); // e_entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    let flags: u32 = if arch == "riscv64" { 0x5 } else { 0 }; // RVC, double-float
    elf.extend_from_slice(&flags.to_le_bytes());
    for h in [64u16, 56, 1, 0, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&h.to_le_bytes());
    }
    // One PT_LOAD, read + execute, the whole file at `base`.
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&5u32.to_le_bytes());
    for v in [0, base, base, size, size, 0x1000u64] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    elf.extend_from_slice(&code);
    elf
}

/// Write the sleeper of `arch` into `dir` (executable).
fn write_sleeper(dir: &Path, arch: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("sleeper-{arch}"));
    std::fs::write(&path, sleeper_bytes(arch)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A child killed (and reaped) when dropped, also when the test fails.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first process of `ps --json` (run by `ps`) that `wanted` accepts, polled for
/// up to 20 s; `what` names it in the failure.
fn listed_where(
    ps: impl Fn() -> support::Run,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = ps();
        assert_code(&out, 0);
        let v = out.json();
        let found = v["processes"]
            .as_array()
            .unwrap_or_else(|| panic!("no processes array\n{}", out.shown()))
            .iter()
            .find(|p| wanted(p))
            .cloned();
        if let Some(p) = found {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never listed\n{}",
            out.shown()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The entry of `pid` in `ps --json`, once it is there with its program (bash has
/// exec'd), within 20 s.
fn listed(ps: impl Fn() -> support::Run, pid: u32) -> serde_json::Value {
    listed_where(ps, &format!("pid {pid}"), |p| {
        p["pid"] == pid && !p["program"].is_null()
    })
}

/// In a private instance with archctl's entry for FOREIGN registered with `flags`, the
/// sleeper started with argv0 `my-argv0` and two arguments is listed with its
/// architecture, entry, emulator, program and, read by the flags, argv0 and arguments.
fn lists_a_foreign_program(flags: &str) {
    let sb = Sandbox::mounted();
    let out = sb.archctl(&["enable", FOREIGN, "--flags", flags]);
    assert_code(&out, 0);
    let entry = format!("qemu-{FOREIGN}");
    assert!(
        sb.entry(&entry)
            .unwrap()
            .contains(&format!("flags: {flags}")),
        "{:?}",
        sb.entry(&entry)
    );
    let prog = write_sleeper(sb.tmp.path(), FOREIGN);
    let child = sb
        .command("bash")
        .arg("-c")
        .arg(format!(
            "exec -a my-argv0 '{}' one 'two words'",
            prog.display()
        ))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let child = Killed(child);
    let pid = child.0.id();
    let p = listed(|| sb.archctl(&["--json", "ps"]), pid);
    assert_eq!(p["arch"], FOREIGN, "{p}");
    assert_eq!(p["entry"], entry.as_str(), "{p}");
    let interpreter = sb
        .entry(&entry)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("interpreter ").map(str::to_string))
        .unwrap();
    assert_eq!(p["emulator"], interpreter.as_str(), "{p}");
    assert_eq!(p["program"], prog.to_str().unwrap(), "{p}");
    if flags.contains('P') {
        assert_eq!(p["argv0"], "my-argv0", "{p}");
    } else {
        // Without P the kernel dropped argv0 for the program's path.
        assert!(p["argv0"].is_null(), "{p}");
    }
    assert_eq!(p["args"], serde_json::json!(["one", "two words"]), "{p}");
    assert!(p["container"].is_null(), "{p}");
    assert!(p["rss_kib"].as_u64().is_some_and(|k| k > 0), "{p}");
    assert!(p["cpu_seconds"].as_f64().is_some_and(|s| s >= 0.0), "{p}");
    // The human table names it too.
    let out = sb.archctl(&["ps"]);
    assert_code(&out, 0);
    let line = out
        .stdout()
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no line for {pid}\n{}", out.shown()));
    assert!(
        line.contains(&entry) && line.contains("two words"),
        "{line}"
    );
    drop(child);
    // Gone: listed no more.
    let out = sb.archctl(&["--json", "ps"]);
    assert_code(&out, 0);
    assert!(
        !out.json()["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == pid),
        "{}",
        out.shown()
    );
}

#[test]
fn ps_lists_a_foreign_program_under_an_entry_without_p() {
    require_sandbox!();
    lists_a_foreign_program("F");
}

#[test]
fn ps_lists_a_foreign_program_under_an_entry_with_p() {
    require_sandbox!();
    lists_a_foreign_program("PF");
}

#[test]
fn ps_finds_an_f_entry_whose_interpreter_is_not_visible_here() {
    require_sandbox!();
    let emulator = format!("/usr/bin/qemu-{FOREIGN}-static");
    skip_unless!(Path::new(&emulator).exists(), "{emulator} not installed");
    // As after a registration from inside a container: the entry's path names no file
    // here (moved away after an F registration), the kernel runs the file it opened.
    let sb = Sandbox::mounted();
    let registered = sb.tmp.path().join(format!("qemu-{FOREIGN}-static"));
    std::fs::copy(&emulator, &registered).unwrap();
    let entry = format!("qemu-{FOREIGN}");
    sb.register_rule(&entry, FOREIGN, registered.to_str().unwrap());
    let moved = sb.tmp.path().join("moved-emulator");
    std::fs::rename(&registered, &moved).unwrap();
    let prog = write_sleeper(sb.tmp.path(), FOREIGN);
    let child = sb
        .command(&prog)
        .arg("x")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let child = Killed(child);
    let p = listed(|| sb.archctl(&["--json", "ps"]), child.0.id());
    assert_eq!(p["entry"], entry.as_str(), "{p}");
    assert_eq!(p["arch"], FOREIGN, "{p}");
    assert_eq!(p["emulator"], moved.to_str().unwrap(), "{p}");
    assert_eq!(p["program"], prog.to_str().unwrap(), "{p}");
    assert_eq!(p["args"], serde_json::json!(["x"]), "{p}");
}

#[test]
fn ps_lists_a_qemu_started_by_hand_with_entry_null() {
    require_sandbox!();
    let emulator = format!("/usr/bin/qemu-{FOREIGN}-static");
    skip_unless!(Path::new(&emulator).exists(), "{emulator} not installed");
    // An empty private instance: no entry explains it.
    let sb = Sandbox::mounted();
    let prog = write_sleeper(sb.tmp.path(), FOREIGN);
    let child = sb
        .command(&emulator)
        .args(["-0", "hand-argv0"])
        .arg(&prog)
        .args(["a", "-b"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let child = Killed(child);
    let p = listed(|| sb.archctl(&["--json", "ps"]), child.0.id());
    assert!(p["entry"].is_null(), "{p}");
    assert_eq!(p["arch"], FOREIGN, "{p}");
    assert_eq!(p["emulator"], emulator.as_str(), "{p}");
    assert_eq!(p["program"], prog.to_str().unwrap(), "{p}");
    assert_eq!(p["argv0"], "hand-argv0", "{p}");
    assert_eq!(p["args"], serde_json::json!(["a", "-b"]), "{p}");
}

#[test]
fn ps_with_nothing_emulated_says_so_and_exits_0() {
    require_sandbox!();
    // Registered, nothing running under it (processes outside the sandbox's user
    // namespace cannot be read from inside: they are counted in the note).
    let sb = Sandbox::mounted();
    assert_code(&sb.archctl(&["enable", FOREIGN, "--no-verify"]), 0);
    let out = sb.archctl(&["ps"]);
    assert_code(&out, 0);
    assert_eq!(out.stdout(), "no process runs under emulation\n");
    let out = sb.archctl(&["--json", "ps"]);
    assert_code(&out, 0);
    assert_eq!(out.json()["processes"], serde_json::json!([]));
    // binfmt_misc not mounted: nothing, and a note saying why.
    let sb = Sandbox::new();
    let out = sb.archctl(&["--json", "ps"]);
    assert_code(&out, 0);
    let v = out.json();
    assert_eq!(v["processes"], serde_json::json!([]));
    assert!(
        v["notes"][0].as_str().unwrap().contains("not mounted"),
        "{}",
        out.shown()
    );
}

/// The OCI platform of FOREIGN.
fn foreign_platform() -> &'static str {
    match FOREIGN {
        "aarch64" => "linux/arm64",
        _ => "linux/riscv64",
    }
}

/// A container removed (with its process) when dropped, also when the test fails.
struct Removed<'d> {
    docker: &'d Dockerd,
    name: &'static str,
}

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", self.name])
            .env("DOCKER_HOST", self.docker.host())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Host-wide: the host's own handlers of FOREIGN set aside (put back by the guard) and
/// archctl's entry registered; None (after a printed skip) when the host's handler
/// could not be put back.
fn host_registration() -> Option<BinfmtGuard> {
    let mut binfmt = BinfmtGuard::new();
    let entries = {
        use archctl::binfmt::{BinfmtFs, KernelBinfmt};
        KernelBinfmt::new(BINFMT).entries().unwrap_or_default()
    };
    if !holders(&entries, FOREIGN).into_iter().all(restorable) {
        return None;
    }
    binfmt.set_aside(FOREIGN);
    let out = Command::new(ARCHCTL).args(["enable", FOREIGN]).run();
    assert_code(&out, 0);
    Some(binfmt)
}

/// A root filesystem tarball holding only the sleeper, at /sleeper.
fn sleeper_rootfs(dir: &Path) -> PathBuf {
    let prog = write_sleeper(dir, FOREIGN);
    std::fs::rename(&prog, dir.join("sleeper")).unwrap();
    let tarball = dir.join("rootfs.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(&tarball)
        .arg("sleeper")
        .run();
    assert_code(&out, 0);
    tarball
}

/// The process of container `id` in `ps --json` (run by `ps`), within 20 s.
fn listed_container(ps: impl Fn() -> support::Run, id: &str) -> serde_json::Value {
    listed_where(ps, &format!("container {id}"), |p| {
        p["container"]["id"] == id
    })
}

/// What every container test checks of the sleeper's process.
#[track_caller]
fn assert_sleeper(p: &serde_json::Value, engine: &str, name: &str) {
    assert_eq!(p["arch"], FOREIGN, "{p}");
    assert_eq!(p["entry"], format!("qemu-{FOREIGN}").as_str(), "{p}");
    assert_eq!(p["program"], "/sleeper", "{p}");
    assert_eq!(p["args"], serde_json::json!(["one", "two"]), "{p}");
    assert_eq!(p["container"]["engine"], engine, "{p}");
    assert_eq!(p["container"]["name"], name, "{p}");
}

#[test]
fn ps_finds_a_foreign_container_of_dockerd_with_its_id_and_name() {
    require_engine!();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(_binfmt) = host_registration() else {
        skip_unless!(
            false,
            "the host's handler of {FOREIGN} could not be put back after the test"
        );
        return;
    };
    let docker = Dockerd::start();
    let d = |args: &[&str]| docker.cli(args);
    // (dockerd 20.10 records an imported image as its own platform whatever
    // `--platform` says, and a `run --platform` of the foreign one would then pull;
    // the kernel does not care: the program is foreign, binfmt_misc runs it under the
    // emulator.)
    let root = tempfile::tempdir().unwrap();
    let tarball = sleeper_rootfs(root.path());
    let image = "archctl-test/ps-sleeper:1";
    let out = d(&[
        "import",
        "--platform",
        foreign_platform(),
        "--change",
        r#"ENTRYPOINT ["/sleeper"]"#,
        tarball.to_str().unwrap(),
        image,
    ]);
    assert_code(&out, 0);
    let name = "archctl-ps-test";
    let container = Removed {
        docker: &docker,
        name,
    };
    let out = d(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        image,
        "one",
        "two",
    ]);
    assert_code(&out, 0);
    let id = out.stdout().trim().to_string();
    assert_eq!(id.len(), 64, "{}", out.shown());
    // Found by its container id (the pid is dockerd's business).
    let ps = |host: &str| {
        Command::new(ARCHCTL)
            .args(["--json", "ps"])
            .env("DOCKER_HOST", host)
            .run()
    };
    let p = listed_container(|| ps(&docker.host()), &id);
    assert_sleeper(&p, "docker", name);
    // The container's main process, as docker knows it.
    let out = d(&["inspect", "--format", "{{.State.Pid}}", name]);
    assert_code(&out, 0);
    assert_eq!(p["pid"].to_string(), out.stdout().trim(), "{p}");
    // No engine answering: the container still found, its name null.
    let p = listed_container(|| ps("unix:///nonexistent/docker.sock"), &id);
    assert!(p["container"]["name"].is_null(), "{p}");
    drop(container);
}

#[test]
fn ps_finds_a_foreign_container_of_podman_with_its_id_and_name() {
    require_engine!();
    skip_unless!(podman_available(), "podman not installed");
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(_binfmt) = host_registration() else {
        skip_unless!(
            false,
            "the host's handler of {FOREIGN} could not be put back after the test"
        );
        return;
    };
    let podman = Podman::new();
    let root = tempfile::tempdir().unwrap();
    let tarball = sleeper_rootfs(root.path());
    let image = "localhost/archctl-test/ps-sleeper:1";
    let out = podman.podman(&[
        "import",
        "--change",
        r#"ENTRYPOINT ["/sleeper"]"#,
        tarball.to_str().unwrap(),
        image,
    ]);
    assert_code(&out, 0);
    let name = "archctl-ps-test";
    struct Gone<'p>(&'p Podman, &'static str);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            let _ = self.0.podman(&["rm", "-f", "-t", "0", self.1]);
        }
    }
    let container = Gone(&podman, name);
    let mut run = vec!["run", "-d", "--name", name, "--network", "none"];
    run.extend(PODMAN_ULIMITS);
    run.extend([image, "one", "two"]);
    let out = podman.podman(&run);
    assert_code(&out, 0);
    let id = out.stdout().trim().to_string();
    assert_eq!(id.len(), 64, "{}", out.shown());
    let p = listed_container(|| podman.archctl(&["--json", "ps"]), &id);
    assert_sleeper(&p, "podman", name);
    let out = podman.podman(&["inspect", "--format", "{{.State.Pid}}", name]);
    assert_code(&out, 0);
    assert_eq!(p["pid"].to_string(), out.stdout().trim(), "{p}");
    drop(container);
}

#[test]
fn ps_as_an_unprivileged_user_says_the_list_may_be_incomplete() {
    skip_unless!(
        nix::unistd::geteuid().is_root(),
        "needs root to drop to uid 65534"
    );
    use std::os::unix::fs::PermissionsExt;
    // A copy uid 65534 can reach (target/ may not be).
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = d.path().join("archctl");
    std::fs::copy(ARCHCTL, &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root's processes (pid 1 at least) cannot be read by uid 65534: skipped, counted.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--json", "ps"])
        .run();
    assert_code(&out, 0);
    let v = out.json();
    assert!(v["processes"].is_array(), "{}", out.shown());
    assert!(
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("run as root")),
        "{}",
        out.shown()
    );
}
