//! Proof by execution: run each architecture's embedded test program (through whatever
//! binfmt_misc handler the kernel picks, or natively) and check its output line.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{ns::ExecImage, testprog};

/// Default time one test program may take (qemu start-up is ~10-50 ms; machines here
/// are shared, so be generous).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How a test program is expected to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Native,
    Emulated,
}

/// One architecture to test.
#[derive(Debug, Clone)]
pub struct Job {
    pub arch: String,
    pub mode: Mode,
    /// Entries that may handle it (emulated mode).
    pub handlers: Vec<String>,
}

/// The result of one test program run. Part of `archctl test --json`.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub arch: String,
    pub ok: bool,
    pub mode: Mode,
    pub handlers: Vec<String>,
    pub time_ms: f64,
    pub output: String,
    pub error: Option<String>,
}

impl TestResult {
    /// A job that did not pass (yet): `error` says why.
    pub fn failed(job: &Job, error: impl Into<String>) -> TestResult {
        TestResult {
            arch: job.arch.clone(),
            ok: false,
            mode: job.mode,
            handlers: job.handlers.clone(),
            time_ms: 0.0,
            output: String::new(),
            error: Some(error.into()),
        }
    }
}

/// Run the jobs in parallel (one thread each) and return results in job order.
pub fn run(jobs: &[Job], timeout: Duration) -> Vec<TestResult> {
    // All images are created before any thread spawns a process (see ExecImage::new).
    let images: Vec<Result<ExecImage, String>> = jobs
        .iter()
        .map(|j| match testprog::program(&j.arch) {
            Some(p) => ExecImage::new(&j.arch, p.bytes).map_err(|e| e.to_string()),
            None => Err(format!("archctl has no test program for {}", j.arch)),
        })
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .zip(&images)
            .map(|(job, img)| scope.spawn(move || run_one(job, img.as_ref(), timeout)))
            .collect();
        handles
            .into_iter()
            .zip(jobs)
            .map(|(h, job)| {
                h.join()
                    .unwrap_or_else(|_| TestResult::failed(job, "test thread panicked"))
            })
            .collect()
    })
}

fn run_one(job: &Job, image: Result<&ExecImage, &String>, timeout: Duration) -> TestResult {
    let image = match image {
        Ok(i) => i,
        Err(e) => return TestResult::failed(job, e.clone()),
    };
    let mut result = TestResult::failed(job, "");
    result.error = None;
    let start = Instant::now();
    let outcome = execute(image, timeout);
    result.time_ms = start.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok((status, stdout, stderr)) => {
            result.output = String::from_utf8_lossy(&stdout).into_owned();
            let expected = testprog::expected_output(&job.arch);
            if !status.success() {
                result.error = Some(format!(
                    "exited with {status}{}",
                    first_line(&stderr)
                        .map(|l| format!(": {l}"))
                        .unwrap_or_default()
                ));
            } else if result.output != expected {
                result.error = Some(format!(
                    "printed {:?}, expected {:?}",
                    result.output, expected
                ));
            } else {
                result.ok = true;
            }
        }
        Err(e) => result.error = Some(e),
    }
    result
}

fn first_line(b: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(b);
    s.lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

type Outcome = (std::process::ExitStatus, Vec<u8>, Vec<u8>);

fn execute(image: &ExecImage, timeout: Duration) -> Result<Outcome, String> {
    let mut child = Command::new(image.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .spawn()
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOEXEC) => "exec format error: no binfmt_misc handler matched".to_string(),
            Some(libc::ELOOP) => {
                "too many levels of interpreters (ELOOP): the handler's interpreter is itself caught by a handler".to_string()
            }
            Some(libc::ENOENT) => {
                "interpreter not found (ENOENT): the handler's interpreter path does not exist here".to_string()
            }
            _ => format!("cannot execute: {e}"),
        })?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {} s", timeout.as_secs()));
            }
            Ok(None) if crate::interrupt::interrupted() => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("interrupted".into());
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_end(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_end(&mut err);
    }
    Ok((status, out, err))
}

/// Registrations archctl made that no test program has proven yet — it was killed
/// during verification, or ran with `--no-verify` (`boot` with `verify = false`) — per
/// binfmt_misc instance, until the next boot (the runtime directory,
/// `unproven.json`). The next `enable` that verifies proves them too, so such an entry
/// is never reported as verified without having been. Best effort: a store that cannot
/// be read or written only costs that memory.
#[derive(Debug)]
pub struct Unproven {
    path: Option<std::path::PathBuf>,
    /// This instance: boot id, the directory's device and path.
    key: String,
    names: std::collections::BTreeSet<String>,
    /// Other instances' lists, kept as they were.
    others: Vec<UnprovenList>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct UnprovenList {
    key: String,
    names: Vec<String>,
}

impl Unproven {
    /// Instances remembered at most (the oldest go first).
    const MAX: usize = 16;

    /// The list for the binfmt_misc instance at `dir`.
    pub fn load(dir: &std::path::Path) -> Unproven {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(dir).map(|m| m.dev()).unwrap_or(0);
        let key = format!(
            "{} {dev} {}",
            crate::host::boot_id().unwrap_or_default(),
            dir.display()
        );
        let path = crate::host::runtime_dir().map(|d| d.join("unproven.json"));
        let mut lists: Vec<UnprovenList> = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mine = lists
            .iter()
            .position(|l| l.key == key)
            .map(|i| lists.remove(i));
        Unproven {
            path,
            names: mine
                .map(|l| l.names.into_iter().collect())
                .unwrap_or_default(),
            key,
            others: lists,
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    pub fn add<'n>(&mut self, names: impl IntoIterator<Item = &'n str>) {
        self.names.extend(names.into_iter().map(str::to_string));
    }

    pub fn remove(&mut self, name: &str) {
        self.names.remove(name);
    }

    /// Write it back (atomically, 0600), or remove the file when nothing is left.
    pub fn store(&self) {
        let Some(path) = &self.path else {
            return;
        };
        let mut lists = self.others.clone();
        if !self.names.is_empty() {
            lists.push(UnprovenList {
                key: self.key.clone(),
                names: self.names.iter().cloned().collect(),
            });
        }
        let excess = lists.len().saturating_sub(Self::MAX);
        lists.drain(..excess);
        if lists.is_empty() {
            let _ = std::fs::remove_file(path);
            return;
        }
        let (Some(dir), Ok(json)) = (path.parent(), serde_json::to_vec(&lists)) else {
            return;
        };
        if std::fs::create_dir_all(dir).is_ok() {
            let _ = crate::fsutil::write_atomic(path, &json, 0o600);
        }
    }
}
