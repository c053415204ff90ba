//! Test support: private binfmt_misc sandboxes (a user + mount namespace per test, Linux
//! 6.7+) and helpers to run archctl inside them and look at the kernel's view.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod engine;
pub mod kube;
pub mod registry;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

pub const ARCHCTL: &str = env!("CARGO_BIN_EXE_archctl");

/// Why registration tests cannot run here, if they cannot.
pub fn sandbox_unavailable() -> Option<String> {
    let release = archctl::ns::kernel_release();
    if !archctl::ns::kernel_at_least(&release, 6, 7) {
        return Some(format!(
            "kernel {release} < 6.7 has no per-namespace binfmt_misc"
        ));
    }
    for tool in ["unshare", "nsenter"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!("{tool} (util-linux) not installed"));
        }
    }
    None
}

/// Skip the calling test, with a printed reason, unless `cond` holds; under CI (the
/// environment variable `CI` set) a test that would be skipped fails instead, since CI
/// installs everything every test needs.
#[macro_export]
macro_rules! skip_unless {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            let why = format!($($why)+);
            if std::env::var_os("CI").is_some() {
                panic!("CI must run every test, but: {why}");
            }
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// Skip the calling test (see [`skip_unless!`]) when sandboxes are unavailable.
#[macro_export]
macro_rules! require_sandbox {
    () => {
        let unavailable = support::sandbox_unavailable();
        $crate::skip_unless!(unavailable.is_none(), "{}", unavailable.unwrap_or_default());
    };
}

/// A command that was run and what came of it: every assertion on it prints the
/// command line with stdout and stderr when it fails (as ripgrep's tests/util.rs does).
pub struct Run {
    pub argv: Vec<String>,
    pub output: Output,
}

impl std::ops::Deref for Run {
    type Target = Output;
    fn deref(&self) -> &Output {
        &self.output
    }
}

impl Run {
    /// Run `cmd` to completion, capturing its output.
    pub fn of(cmd: &mut Command) -> Run {
        let argv = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
        Run { argv, output }
    }

    pub fn stdout(&self) -> String {
        stdout(&self.output)
    }

    pub fn stderr(&self) -> String {
        stderr(&self.output)
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.output.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.shown()))
    }

    /// The command line, exit status, stdout and stderr, for failure messages.
    pub fn shown(&self) -> String {
        shown(self)
    }
}

/// `cmd.run()`: [`Run::of`].
pub trait RunExt {
    fn run(&mut self) -> Run;
}

impl RunExt for Command {
    fn run(&mut self) -> Run {
        Run::of(self)
    }
}

/// Something to assert on: a [`Run`] (which knows its command line) or a bare [`Output`]
/// (of a child spawned by hand).
pub trait Outcome {
    fn output(&self) -> &Output;
    fn argv(&self) -> Option<&[String]>;
}

impl Outcome for Run {
    fn output(&self) -> &Output {
        &self.output
    }
    fn argv(&self) -> Option<&[String]> {
        Some(&self.argv)
    }
}

impl Outcome for Output {
    fn output(&self) -> &Output {
        self
    }
    fn argv(&self) -> Option<&[String]> {
        None
    }
}

/// The command line (when known), exit status, stdout and stderr of `o`.
pub fn shown(o: &impl Outcome) -> String {
    let out = o.output();
    let cmd = match o.argv() {
        Some(argv) => format!("command: {argv:?}\n"),
        None => String::new(),
    };
    format!(
        "{cmd}exit status: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// A private user + mount namespace holding its own binfmt_misc instance (mounted by
/// archctl itself at `dir` on the first enable, or by [`Sandbox::mounted`]).
pub struct Sandbox {
    holder: Child,
    pid: u32,
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("binfmt_misc");
        std::fs::create_dir(&dir).unwrap();
        let mut holder = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                "echo ready; exec sleep 900",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn unshare");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "namespace holder did not start");
        let pid = holder.id();
        // Never run anything "inside" unless it really is another user namespace.
        let mine = std::fs::read_link("/proc/self/ns/user").unwrap();
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
        assert_ne!(mine, theirs, "sandbox is not in its own user namespace");
        Sandbox {
            holder,
            pid,
            tmp,
            dir,
        }
    }

    /// A sandbox whose binfmt_misc is already mounted at `dir`.
    pub fn mounted() -> Sandbox {
        let sb = Sandbox::new();
        let out = sb.sh(&format!(
            "mount -t binfmt_misc binfmt_misc '{}'",
            sb.dir.display()
        ));
        assert!(out.status.success(), "mount: {}", out.shown());
        sb
    }

    /// A command that runs inside the sandbox.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, program: S) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("--target")
            .arg(self.pid.to_string())
            .args(["--user", "--mount", "--"])
            .arg(program);
        c.stdin(Stdio::null());
        c
    }

    /// Run archctl inside with `--binfmt-dir` pointing at this sandbox (and its own
    /// runtime directory, so the native-set cache is per sandbox).
    pub fn archctl(&self, args: &[&str]) -> Run {
        self.command(ARCHCTL)
            .env("ARCHCTL_RUNTIME_DIR", self.runtime_dir())
            .arg("--binfmt-dir")
            .arg(&self.dir)
            .args(args)
            .run()
    }

    /// archctl with `--json`, parsed.
    pub fn archctl_json(&self, args: &[&str]) -> (Run, serde_json::Value) {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.archctl(&a);
        let v = out.json();
        (out, v)
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.tmp.path().join("run")
    }

    pub fn sh(&self, script: &str) -> Run {
        self.command("sh").args(["-c", script]).run()
    }

    /// The kernel's text for an entry, or None.
    pub fn entry(&self, name: &str) -> Option<String> {
        let out = self.sh(&format!("cat '{}/{name}'", self.dir.display()));
        out.status.success().then(|| stdout(&out))
    }

    /// Names of all entries (sorted), empty when not mounted.
    pub fn entries(&self) -> Vec<String> {
        let out = self.sh(&format!("ls '{}'", self.dir.display()));
        let mut v: Vec<String> = stdout(&out)
            .lines()
            .filter(|l| *l != "register" && *l != "status")
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// Full text of every entry: a snapshot to prove "unchanged".
    pub fn snapshot(&self) -> Vec<(String, String)> {
        self.entries()
            .into_iter()
            .map(|n| {
                let t = self.entry(&n).unwrap_or_default();
                (n, t)
            })
            .collect()
    }

    pub fn is_mounted(&self) -> bool {
        self.sh(&format!("test -e '{}/register'", self.dir.display()))
            .status
            .success()
    }

    /// Register a raw entry directly through the kernel interface.
    pub fn register_raw(&self, line: &str) {
        let out = self.sh(&format!(
            "printf '%s' '{line}' > '{}/register'",
            self.dir.display()
        ));
        assert!(out.status.success(), "register {line}: {}", out.shown());
    }

    /// Register `entry` with the magic/mask of archctl's rule for `arch`, directly through
    /// the kernel interface (as other tools would: rosetta, distribution packages).
    pub fn register_rule(&self, entry: &str, arch: &str, interpreter: &str) {
        let rule = archctl::arch::Table::builtin().get(arch).unwrap();
        let esc = archctl::arch::escape_bytes;
        self.register_raw(&format!(
            ":{entry}:M::{}:{}:{interpreter}:F",
            esc(&rule.magic),
            esc(&rule.mask)
        ));
    }

    /// Write a test program of `arch` into the sandbox's temp dir; returns its path.
    pub fn program_file(&self, arch: &str) -> PathBuf {
        write_program(self.tmp.path(), arch)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Write the embedded test program of `arch` into `dir` (executable).
pub fn write_program(dir: &Path, arch: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p =
        archctl::testprog::program(arch).unwrap_or_else(|| panic!("no test program for {arch}"));
    let path = dir.join(format!("prog-{arch}"));
    std::fs::write(&path, p.bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert an exit code, showing the command and its output when it differs.
#[track_caller]
pub fn assert_code(o: &impl Outcome, code: i32) {
    assert_eq!(o.output().status.code(), Some(code), "{}", shown(o));
}

/// The error line contract: `archctl: error: ...` first on stderr.
#[track_caller]
pub fn assert_error_line(o: &impl Outcome, needle: &str) {
    let err = stderr(o.output());
    let line = err
        .lines()
        .find(|l| l.starts_with("archctl: error: "))
        .unwrap_or_else(|| panic!("no `archctl: error:` line in stderr\n{}", shown(o)));
    assert!(
        line.contains(needle),
        "error line {line:?} does not mention {needle:?}\n{}",
        shown(o)
    );
}

/// A minimal HTTP server for what docker-registry will not do: answers from `handler`
/// (request target, headers) and records every request's headers. A response whose
/// Content-Length header declares more than its body is sent short and the connection
/// closed, as a dropped connection would. It runs on [`registry::Server`].
pub struct FakeServer {
    pub addr: String,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    _server: registry::Server,
}

/// A request the fake server saw: target and (lower-cased) headers.
pub type Seen = (String, Vec<(String, String)>);

impl FakeServer {
    pub fn start(
        handler: impl Fn(&str, &[(String, String)]) -> (u16, Vec<(String, String)>, Vec<u8>)
        + Send
        + Sync
        + 'static,
    ) -> FakeServer {
        use registry::{HttpResponse, Reply};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let server = registry::Server::start(std::sync::Arc::new(move |req| {
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            s2.lock()
                .unwrap()
                .push((req.target.clone(), headers.clone()));
            let (status, headers, mut body) = handler(&req.target, &headers);
            let declared = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok());
            let sent = body.len();
            match declared {
                Some(d) if d > sent => {
                    // The head declares `d` bytes (the server writes the body's length).
                    body.resize(d, 0);
                    Reply::Truncate(
                        HttpResponse {
                            status,
                            headers,
                            body,
                        },
                        sent,
                    )
                }
                _ => Reply::Send(HttpResponse {
                    status,
                    headers,
                    body,
                }),
            }
        }));
        FakeServer {
            addr: server.addr.to_string(),
            seen,
            _server: server,
        }
    }
}

/// [`tree_snapshot`] with file contents as text.
pub fn text_snapshot(root: &Path) -> std::collections::BTreeMap<String, String> {
    tree_snapshot(root, |p| std::fs::read_to_string(p).unwrap_or_default())
}

/// `archctl service ARGS --root ROOT --binary /usr/local/bin/archctl`.
pub fn service_in(root: &Path, args: &[&str]) -> Run {
    Command::new(ARCHCTL)
        .arg("service")
        .args(args)
        .arg("--root")
        .arg(root)
        .args(["--binary", "/usr/local/bin/archctl"])
        .run()
}

/// Every path under `root`: directories as "dir", links as "-> target", files as their
/// mode (octal) and `render(path)` (content, or a hash for big files). For tests that a
/// command leaves a tree exactly as it was.
pub fn tree_snapshot(
    root: &Path,
    render: impl Fn(&Path) -> String,
) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut m = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let v = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                stack.push(p.clone());
                "dir".into()
            } else {
                format!("{:o} {}", meta.permissions().mode() & 0o7777, render(&p))
            };
            m.insert(rel, v);
        }
    }
    m
}

/// A command talking to registries with nothing of the user's: archctl's cache in
/// `cache`, Docker's config.json read from `docker_config`, no daemon.json or
/// registries.conf, no proxy.
pub trait RegistryIsolated {
    fn registry_isolated(
        &mut self,
        cache: impl AsRef<Path>,
        docker_config: impl AsRef<Path>,
    ) -> &mut Self;
}

impl RegistryIsolated for Command {
    fn registry_isolated(
        &mut self,
        cache: impl AsRef<Path>,
        docker_config: impl AsRef<Path>,
    ) -> &mut Self {
        self.env("ARCHCTL_CACHE_DIR", cache.as_ref())
            .env("ARCHCTL_DOCKER_DAEMON_JSON", "/nonexistent")
            .env("ARCHCTL_REGISTRIES_CONF", "/nonexistent")
            .env("DOCKER_CONFIG", docker_config.as_ref());
        for k in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"] {
            self.env_remove(k);
        }
        self
    }
}

/// The check named `id` in an `archctl --json doctor` report.
#[track_caller]
pub fn doctor_check<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["check"] == id))
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}
