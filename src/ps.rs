//! Processes running under emulation: which processes the kernel started through a
//! binfmt_misc entry's interpreter, what they emulate, and the container they are in.
//!
//! Everything comes from `/proc` (a root given by the caller, so tests can build one):
//!
//! - **Which entry**: `/proc/PID/exe` is the interpreter the kernel ran. It is compared
//!   with each enabled entry's interpreter by device and inode (stat follows the magic
//!   link to the open file) and by path (the link's text, without ` (deleted)`); an
//!   interpreter whose path is not visible here (an `F` entry registered from a
//!   container) by the interpreter string the kernel puts in argv\[0\]. When several entries share the interpreter, the emulated program's
//!   first bytes (through `/proc/PID/root`) pick the one whose magic and mask match.
//! - **The program and its arguments**, from `/proc/PID/cmdline`: binfmt_misc starts the
//!   interpreter as `[interpreter, filename, argv1...]`, the original argv0 removed; with
//!   flag `P` (preserve argv0) as `[interpreter, filename, argv0, argv1...]`
//!   (`load_misc_binary` in the kernel's fs/binfmt_misc.c).
//! - **CPU time** (utime + stime of `/proc/PID/stat`, in clock ticks) and **RSS**
//!   (`VmRSS` of `/proc/PID/status`).
//! - **The container**, from the cgroup path in `/proc/PID/cgroup` ([`container_of`]).
//! - A process running an emulator named `qemu-ARCH[-static]` that no enabled entry
//!   explains (started by hand, or through another binfmt_misc instance's entry) is
//!   listed with entry null, its command line read as qemu-user's ([`qemu_command`]).
//!
//! A process that cannot be read (gone, or not ours to read) is skipped, never an error;
//! those refused are counted so the command can say the list may be incomplete.

use std::{
    fs::File,
    io::{self, Read},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{
    arch::Table,
    binfmt::{Entry, Flags},
    fsutil,
    rootfs::Root,
    serve,
};

/// The most of `/proc/PID/cmdline` read (the kernel's own limit for arguments is far
/// larger; the rest is cut off).
pub const CMDLINE_LIMIT: u64 = 64 * 1024;

/// The most of a small `/proc` file (stat, status, cgroup) read.
const SMALL_LIMIT: u64 = 16 * 1024;

/// What binfmt_misc reads of a program to match it (BINPRM_BUF_SIZE).
const HEADER_LEN: u64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum PsError {
    #[error("cannot list processes in {path}: {source}")]
    Proc {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One process running under an emulator. Field names are the JSON contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Process {
    pub pid: u32,
    /// The emulated architecture (the rule the entry's magic selects), when known.
    pub arch: Option<String>,
    /// The emulator binary (`/proc/PID/exe`).
    pub emulator: String,
    /// The binfmt_misc entry it came through.
    pub entry: Option<String>,
    /// The emulated program, as the kernel was asked to run it.
    pub program: Option<String>,
    /// The program's argv\[0\]: only an entry with `P` keeps it, without `P` the kernel
    /// replaced it with the program's path (null).
    pub argv0: Option<String>,
    pub args: Vec<String>,
    /// User + system CPU time.
    pub cpu_seconds: f64,
    /// Resident memory (VmRSS), when the kernel shows it.
    pub rss_kib: Option<u64>,
    pub container: Option<Container>,
}

/// The container a process belongs to, from its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    pub engine: ContainerEngine,
    pub id: String,
    /// The engine's name for it, when the engine answered.
    pub name: Option<String>,
}

/// Who made the container (as its cgroup path tells).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerEngine {
    Docker,
    Podman,
    /// containerd: nerdctl's containers, and Kubernetes pods through CRI.
    Containerd,
}

impl ContainerEngine {
    pub fn as_str(&self) -> &'static str {
        match self {
            ContainerEngine::Docker => "docker",
            ContainerEngine::Podman => "podman",
            ContainerEngine::Containerd => "containerd",
        }
    }
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
    pub processes: Vec<Process>,
    /// Processes whose executable could not be read (permission): the list may miss some.
    pub unreadable: usize,
}

/// An enabled entry's interpreter as this mount namespace sees it.
struct Candidate<'e> {
    entry: &'e Entry,
    /// Device and inode of the interpreter, when its path is visible here.
    id: Option<(u64, u64)>,
}

/// Every process under `proc_root` (normally `/proc`) running the interpreter of one of
/// the enabled `entries`, or a `qemu-ARCH` emulator, by pid.
pub fn scan(proc_root: &Path, entries: &[Entry], table: &Table) -> Result<Scan, PsError> {
    let candidates: Vec<Candidate> = entries
        .iter()
        .filter(|e| e.enabled)
        .map(|entry| Candidate {
            entry,
            id: std::fs::metadata(&entry.interpreter)
                .ok()
                .map(|m| (m.dev(), m.ino())),
        })
        .collect();
    let dir = std::fs::read_dir(proc_root).map_err(|source| PsError::Proc {
        path: proc_root.to_path_buf(),
        source,
    })?;
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .collect();
    pids.sort_unstable();
    let mut found = Scan::default();
    let tick = clock_ticks();
    for pid in pids {
        match process(
            &proc_root.join(pid.to_string()),
            pid,
            &candidates,
            table,
            tick,
        ) {
            Ok(Some(p)) => found.processes.push(p),
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => found.unreadable += 1,
            Err(_) => {} // gone, or a kernel thread without an executable
        }
    }
    Ok(found)
}

/// Clock ticks per second (`_SC_CLK_TCK`), 100 when sysconf does not say.
fn clock_ticks() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// The process in `dir` (`/proc/PID`), when it runs one of the candidates' interpreters.
fn process(
    dir: &Path,
    pid: u32,
    candidates: &[Candidate],
    table: &Table,
    tick: f64,
) -> io::Result<Option<Process>> {
    let link = std::fs::read_link(dir.join("exe"))?;
    let link = link.to_string_lossy();
    let emulator = link.strip_suffix(" (deleted)").unwrap_or(&link).to_string();
    // The open file itself (the magic link), whether or not its path is visible here.
    let id = std::fs::metadata(dir.join("exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let mut matching: Vec<&Entry> = candidates
        .iter()
        .filter(|c| (c.id.is_some() && c.id == id) || c.entry.interpreter == emulator)
        .map(|c| c.entry)
        .collect();
    let invisible: Vec<&Entry> = candidates
        .iter()
        .filter(|c| c.id.is_none())
        .map(|c| c.entry)
        .collect();
    let by_hand = started_by_hand(table, &emulator);
    if matching.is_empty() && invisible.is_empty() && by_hand.is_none() {
        return Ok(None);
    }
    let argv = split_cmdline(&read_limited(&dir.join("cmdline"), CMDLINE_LIMIT)?);
    if matching.is_empty() {
        // An interpreter not visible here (an F entry registered from a container):
        // the kernel put the entry's interpreter string in argv[0].
        matching = invisible
            .into_iter()
            .filter(|e| argv.first() == Some(&e.interpreter))
            .collect();
    }
    // No entry's: a qemu-user started by hand (`qemu-aarch64-static ./prog`), or
    // through an entry of another binfmt_misc instance.
    let by_hand = match (matching.is_empty(), by_hand) {
        (false, _) => None,
        (true, Some(arch)) => Some(arch),
        (true, None) => return Ok(None),
    };
    let (entry, arch, program, argv0, args) = match by_hand {
        Some(arch) => {
            let (program, argv0, args) = qemu_command(&argv);
            (None, Some(arch), program, argv0, args)
        }
        None => {
            let program = argv.get(1).cloned();
            let header = program
                .as_deref()
                .and_then(|p| program_header(dir, p))
                .unwrap_or_default();
            let Some(entry) = pick_entry(&matching, &argv, &header) else {
                return Ok(None);
            };
            let (argv0, args) = arguments(&argv, entry.flags);
            let arch = arch_of(table, entry, &header);
            (Some(entry.name.clone()), arch, program, argv0, args)
        }
    };
    let stat = read_limited(&dir.join("stat"), SMALL_LIMIT)?;
    let cpu_seconds = cpu_ticks(&String::from_utf8_lossy(&stat)).map_or(0.0, |t| t as f64 / tick);
    let rss_kib = read_limited(&dir.join("status"), SMALL_LIMIT)
        .ok()
        .and_then(|s| vm_rss(&String::from_utf8_lossy(&s)));
    let container = read_limited(&dir.join("cgroup"), SMALL_LIMIT)
        .ok()
        .and_then(|c| container_of(&String::from_utf8_lossy(&c)));
    Ok(Some(Process {
        pid,
        arch,
        emulator,
        entry,
        program,
        argv0,
        args,
        cpu_seconds,
        rss_kib,
        container,
    }))
}

/// The architecture of an emulator named `qemu-ARCH` or `qemu-ARCH-static` (QEMU's and
/// the distributions' names), for a process no entry explains.
fn started_by_hand(table: &Table, emulator: &str) -> Option<String> {
    let name = Path::new(emulator).file_name()?.to_str()?;
    let arch = name.strip_prefix("qemu-")?;
    let arch = arch.strip_suffix("-static").unwrap_or(arch);
    table.get(arch).map(|r| r.name.clone())
}

/// qemu-user's options that take no value (every other one takes one): those of QEMU's
/// linux-user/main.c option table (`qemu-aarch64 -h` of 7.2 lists them; 8.1 renamed
/// -singlestep -one-insn-per-tb).
const QEMU_FLAGS: &[&str] = &[
    "h",
    "help",
    "version",
    "strace",
    "singlestep",
    "one-insn-per-tb",
];

/// Program, argv0 (`-0 NAME`) and arguments of a qemu-user command line
/// `qemu-ARCH [OPTIONS] PROGRAM [ARGS...]`.
pub fn qemu_command(argv: &[String]) -> (Option<String>, Option<String>, Vec<String>) {
    let mut argv0 = None;
    let mut words = argv.iter().skip(1);
    while let Some(w) = words.next() {
        if w == "--" {
            break;
        }
        let Some(option) = w.strip_prefix('-') else {
            let args = words.cloned().collect();
            return (Some(w.clone()), argv0, args);
        };
        let option = option.strip_prefix('-').unwrap_or(option);
        if QEMU_FLAGS.contains(&option) {
            continue;
        }
        let value = words.next();
        if option == "0" {
            argv0 = value.cloned();
        }
    }
    let program = words.next().cloned();
    (program, argv0, words.cloned().collect())
}

/// Of the entries whose interpreter the process runs, the one the kernel most likely
/// came through: the interpreter string it put in argv\[0\], then the magic that
/// matches the program's header. None when no entry's interpreter is running.
fn pick_entry<'e>(matching: &[&'e Entry], argv: &[String], header: &[u8]) -> Option<&'e Entry> {
    let named: Vec<&Entry> = matching
        .iter()
        .copied()
        .filter(|e| argv.first() == Some(&e.interpreter))
        .collect();
    let pool = if named.is_empty() { matching } else { &named };
    let by_magic = pool.iter().copied().find(|e| e.matcher.matches(header));
    by_magic.or_else(|| pool.first().copied())
}

/// The emulated architecture: the rule the entry's magic selects (the one matching the
/// program's header when it selects several), else the rule matching the header.
fn arch_of(table: &Table, entry: &Entry, header: &[u8]) -> Option<String> {
    let selected = serve::selected_rules(table, &entry.matcher);
    let by_header = |r: &crate::arch::Rule| !header.is_empty() && r.matches(header);
    selected
        .iter()
        .find(|r| by_header(r))
        .or(selected.first())
        .map(|r| r.name.clone())
        .or_else(|| {
            table
                .rules()
                .iter()
                .find(|r| by_header(r))
                .map(|r| r.name.clone())
        })
}

/// The program's first bytes, read in the process's own root (a container's): links
/// followed inside that root ([`Root`]), only a regular file opened (never blocking on
/// a FIFO a process named), at most [`HEADER_LEN`] bytes.
fn program_header(dir: &Path, program: &str) -> Option<Vec<u8>> {
    let path = match program.strip_prefix('/') {
        Some(rel) => {
            let root = Root::open(&dir.join("root")).ok()?;
            let real = root.real(Path::new(rel)).ok()?;
            root.path().join(real.strip_prefix("/").unwrap_or(&real))
        }
        None => dir.join("cwd").join(program),
    };
    let f = fsutil::open_regular(&path).ok()?;
    let mut v = Vec::new();
    f.take(HEADER_LEN).read_to_end(&mut v).ok()?;
    Some(v)
}

/// `/proc/PID/cmdline` split at NULs (a trailing NUL ends the last argument).
pub fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The emulated program's argv0 and arguments from the interpreter's argv, by the
/// entry's flags: `[interpreter, filename, argv1...]`, with `P`
/// `[interpreter, filename, argv0, argv1...]`.
pub fn arguments(argv: &[String], flags: Flags) -> (Option<String>, Vec<String>) {
    let rest = argv.get(2..).unwrap_or_default();
    if flags.preserve_argv0 {
        match rest.split_first() {
            Some((argv0, args)) => (Some(argv0.clone()), args.to_vec()),
            None => (None, Vec::new()),
        }
    } else {
        (None, rest.to_vec())
    }
}

/// utime + stime (clock ticks) from `/proc/PID/stat`, read after the last `)` (the
/// command name in parentheses may hold spaces and parentheses).
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

/// `VmRSS` of `/proc/PID/status`, in KiB.
pub fn vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The container a process is in, from `/proc/PID/cgroup` (the cgroup v2 line `0::PATH`
/// first, then the v1 lines): docker (`docker-ID.scope`, `/docker/ID`), podman
/// (`libpod-ID.scope`, `/libpod_parent/libpod-ID`), containerd (nerdctl's
/// `nerdctl-ID.scope` and `/NAMESPACE/ID`, CRI's `cri-containerd-ID.scope`, kubepods).
pub fn container_of(cgroup: &str) -> Option<Container> {
    let paths = cgroup.lines().filter_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (h, _, path) = (parts.next()?, parts.next()?, parts.next()?);
        Some((h == "0", path))
    });
    let (v2, v1): (Vec<_>, Vec<_>) = paths.partition(|(v2, _)| *v2);
    v2.into_iter()
        .chain(v1)
        .find_map(|(_, path)| container_in_path(path))
}

fn container_in_path(path: &str) -> Option<Container> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let found = |engine, id: &str| {
        Some(Container {
            engine,
            id: id.to_string(),
            name: None,
        })
    };
    // The innermost segment naming a container wins (a container's own sub-cgroups,
    // e.g. systemd's in it, sit below it).
    for (i, seg) in segments.iter().enumerate().rev() {
        let scope = seg.strip_suffix(".scope").unwrap_or(seg);
        for (prefix, engine) in [
            ("docker-", ContainerEngine::Docker),
            ("libpod-", ContainerEngine::Podman),
            ("cri-containerd-", ContainerEngine::Containerd),
            ("nerdctl-", ContainerEngine::Containerd),
        ] {
            if let Some(id) = scope.strip_prefix(prefix)
                && is_id(id)
            {
                return found(engine, id);
            }
        }
        if is_id(seg) && i > 0 {
            let engine = match segments[i - 1] {
                "docker" => ContainerEngine::Docker,
                "libpod_parent" => ContainerEngine::Podman,
                // kubepods (cgroupfs driver): /kubepods/QOS/podUID/ID.
                p if p.starts_with("pod") && segments[0].starts_with("kubepods") => {
                    ContainerEngine::Containerd
                }
                // nerdctl with the cgroupfs driver: /NAMESPACE/ID.
                _ if i == 1 && !segments[0].ends_with(".slice") => ContainerEngine::Containerd,
                _ => continue,
            };
            return found(engine, seg);
        }
    }
    None
}

/// A full container id: 64 lowercase hex digits.
fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// At most `limit` bytes of `path`.
fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    File::open(path)?.take(limit).read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn arguments_with_and_without_preserve_argv0() {
        let argv = s(&["/usr/bin/qemu-aarch64-static", "/bin/prog", "name", "a b"]);
        assert_eq!(
            arguments(&argv, Flags::parse_known("F")),
            (None, s(&["name", "a b"]))
        );
        assert_eq!(
            arguments(&argv, Flags::parse_known("PF")),
            (Some("name".into()), s(&["a b"]))
        );
        assert_eq!(
            arguments(&argv[..2], Flags::parse_known("P")),
            (None, vec![])
        );
        assert_eq!(split_cmdline(b"a\0\0b\0"), s(&["a", "", "b"]));
        assert!(split_cmdline(b"").is_empty());
        // qemu-user started by hand: its options skipped, -0 is argv0.
        let argv = s(&["qemu-aarch64", "-L", "/x", "-strace", "-0", "n", "p", "-a"]);
        assert_eq!(
            qemu_command(&argv),
            (Some("p".into()), Some("n".into()), s(&["-a"]))
        );
        assert_eq!(
            qemu_command(&s(&["qemu-aarch64", "--", "-p", "a"])),
            (Some("-p".into()), None, s(&["a"]))
        );
        assert_eq!(
            qemu_command(&s(&["qemu-aarch64", "-cpu"])),
            (None, None, vec![])
        );
        let table = Table::builtin();
        assert_eq!(
            started_by_hand(table, "/usr/bin/qemu-aarch64-static").as_deref(),
            Some("aarch64")
        );
        assert_eq!(
            started_by_hand(table, "/usr/bin/qemu-riscv64").as_deref(),
            Some("riscv64")
        );
        assert_eq!(started_by_hand(table, "/usr/bin/qemu-system-x86_64"), None);
        assert_eq!(started_by_hand(table, "/bin/sh"), None);
    }

    #[test]
    fn cpu_time_is_read_after_the_last_parenthesis() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 99 1000 200";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("42 (x) S 1"), None);
        assert_eq!(vm_rss("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234));
        assert_eq!(vm_rss("Name:\tkthread\n"), None);
    }

    #[test]
    fn containers_from_cgroup_paths() {
        let id = "0123456789abcdef".repeat(4);
        let c = |text: &str| container_of(text).map(|c| (c.engine, c.id));
        let cases = [
            (
                format!("0::/system.slice/docker-{id}.scope\n"),
                Some(ContainerEngine::Docker),
            ),
            (format!("0::/docker/{id}\n"), Some(ContainerEngine::Docker)),
            (
                format!(
                    "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{id}.scope/container\n"
                ),
                Some(ContainerEngine::Podman),
            ),
            (
                format!("0::/libpod_parent/libpod-{id}\n"),
                Some(ContainerEngine::Podman),
            ),
            (
                format!("0::/system.slice/nerdctl-{id}.scope\n"),
                Some(ContainerEngine::Containerd),
            ),
            (
                format!("0::/default/{id}\n"),
                Some(ContainerEngine::Containerd),
            ),
            (
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{id}.scope\n"
                ),
                Some(ContainerEngine::Containerd),
            ),
            (
                format!("0::/kubepods/burstable/pod1234/{id}\n"),
                Some(ContainerEngine::Containerd),
            ),
            // cgroup v1 lines, no v2 path naming a container.
            (
                format!("12:memory:/docker/{id}\n0::/\n"),
                Some(ContainerEngine::Docker),
            ),
            (
                "0::/user.slice/user-0.slice/session-1.scope\n".to_string(),
                None,
            ),
            (format!("0::/system.slice/libpod-conmon-{id}.scope\n"), None),
            ("0::/docker/abc\n".to_string(), None),
        ];
        for (text, engine) in cases {
            assert_eq!(c(&text), engine.map(|e| (e, id.clone())), "{text}");
        }
    }

    /// A fake /proc with one emulated process, one native and one gone.
    #[test]
    fn scan_finds_the_emulated_process_by_interpreter() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let emu = root.join("qemu-aarch64-static");
        std::fs::write(&emu, b"emulator").unwrap();
        let other = root.join("sh");
        std::fs::write(&other, b"native").unwrap();
        let table = Table::builtin();
        let rule = table.get("aarch64").unwrap();
        let prog = root.join("prog");
        std::fs::write(&prog, crate::arch::representative_header(rule)).unwrap();
        let mk = |pid: u32, exe: &Path, cmdline: &[u8]| {
            let p = root.join("proc").join(pid.to_string());
            std::fs::create_dir_all(&p).unwrap();
            std::os::unix::fs::symlink(exe, p.join("exe")).unwrap();
            std::os::unix::fs::symlink("/", p.join("root")).unwrap();
            std::fs::write(p.join("cmdline"), cmdline).unwrap();
            std::fs::write(
                p.join("stat"),
                format!("{pid} (prog) S 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 1 1"),
            )
            .unwrap();
            std::fs::write(p.join("status"), "VmRSS:\t 512 kB\n").unwrap();
            std::fs::write(p.join("cgroup"), "0::/user.slice\n").unwrap();
        };
        let cmd = format!("{}\0{}\0argv0\0x\0", emu.display(), prog.display());
        mk(10, &emu, cmd.as_bytes());
        let cmd_p = cmd.clone();
        mk(11, &other, b"sh\0");
        std::fs::create_dir_all(root.join("proc/self")).unwrap();
        let entry = |name: &str, flags: &str| Entry {
            name: name.into(),
            enabled: true,
            interpreter: emu.display().to_string(),
            flags: Flags::parse_known(flags),
            matcher: crate::binfmt::Matcher::Magic {
                offset: 0,
                magic: rule.magic.clone(),
                mask: Some(rule.mask.clone()),
            },
        };
        let found = scan(&root.join("proc"), &[entry("qemu-aarch64", "PF")], table).unwrap();
        assert_eq!(found.processes.len(), 1, "{found:?}");
        let p = &found.processes[0];
        assert_eq!(p.pid, 10);
        assert_eq!(p.arch.as_deref(), Some("aarch64"));
        assert_eq!(p.entry.as_deref(), Some("qemu-aarch64"));
        assert_eq!(p.program.as_deref(), Some(prog.to_str().unwrap()));
        assert_eq!(p.argv0.as_deref(), Some("argv0"));
        assert_eq!(p.args, s(&["x"]));
        assert_eq!(p.rss_kib, Some(512));
        assert!(p.cpu_seconds > 0.0);
        assert_eq!(p.container, None);
        // Two entries with this interpreter: the program's header picks the one whose
        // magic matches (the riscv64 one is listed first and does not).
        let riscv = table.get("riscv64").unwrap();
        let mut other = entry("qemu-riscv64", "F");
        other.matcher = crate::binfmt::Matcher::Magic {
            offset: 0,
            magic: riscv.magic.clone(),
            mask: Some(riscv.mask.clone()),
        };
        let both = [other, entry("qemu-aarch64", "PF")];
        let found = scan(&root.join("proc"), &both, table).unwrap();
        assert_eq!(found.processes[0].entry.as_deref(), Some("qemu-aarch64"));
        assert_eq!(found.processes[0].arch.as_deref(), Some("aarch64"));
        // A program naming a FIFO: never opened (it would block), no header to go by.
        let fifo = root.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let cmd_fifo = format!("{}\0{}\0", emu.display(), fifo.display());
        std::fs::write(root.join("proc/10/cmdline"), cmd_fifo).unwrap();
        let found = scan(&root.join("proc"), &both, table).unwrap();
        assert_eq!(found.processes[0].program.as_deref(), fifo.to_str());
        std::fs::write(root.join("proc/10/cmdline"), cmd.as_bytes()).unwrap();
        // Without P the third word is an argument.
        let found = scan(&root.join("proc"), &[entry("qemu-aarch64", "F")], table).unwrap();
        assert_eq!(found.processes[0].argv0, None);
        assert_eq!(found.processes[0].args, s(&["argv0", "x"]));
        // An interpreter not visible here (registered from a container, F): matched by
        // the interpreter string the kernel put in argv[0].
        let mut invisible = entry("qemu-aarch64", "F");
        invisible.interpreter = "/nonexistent/qemu-aarch64-static".into();
        let cmd = format!("/nonexistent/qemu-aarch64-static\0{}\0a\0", prog.display());
        std::fs::write(root.join("proc/10/cmdline"), cmd).unwrap();
        let found = scan(&root.join("proc"), &[invisible.clone()], table).unwrap();
        assert_eq!(found.processes.len(), 1, "{found:?}");
        assert_eq!(found.processes[0].entry.as_deref(), Some("qemu-aarch64"));
        assert_eq!(found.processes[0].args, s(&["a"]));
        // Another argv[0]: not that entry's (only by the emulator's name, entry null).
        std::fs::write(root.join("proc/10/cmdline"), b"/bin/x\0p\0").unwrap();
        let found = scan(&root.join("proc"), &[invisible], table).unwrap();
        assert_eq!(found.processes[0].entry, None);
        std::fs::write(root.join("proc/10/cmdline"), cmd_p.as_bytes()).unwrap();
        // No enabled entry: a qemu-ARCH emulator is still listed, as started by hand
        // (entry null, its command line read as qemu's); the native one never is.
        let mut off = entry("qemu-aarch64", "F");
        off.enabled = false;
        let found = scan(&root.join("proc"), &[off], table).unwrap();
        assert_eq!(found.processes.len(), 1, "{found:?}");
        let p = &found.processes[0];
        assert_eq!((p.pid, p.entry.as_deref()), (10, None));
        assert_eq!(p.arch.as_deref(), Some("aarch64"));
        assert_eq!(p.program.as_deref(), Some(prog.to_str().unwrap()));
        assert_eq!(p.args, s(&["argv0", "x"]));
    }
}
