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
