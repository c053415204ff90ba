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

/// Wait for `child` at most `timeout`, polling (from 200 µs, doubling to 20 ms); kill
/// and reap it on the deadline or when archctl is interrupted, and say which.
pub fn wait_bounded(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Result<std::process::ExitStatus, String> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Ok(s),
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
    }
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
    let status = wait_bounded(&mut child, timeout)?;
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
/// binfmt_misc instance, until the next boot: one small file per instance in the runtime
/// directory (`unproven/<device>-<hash of the directory>.json`). The next `enable` that
/// verifies proves them too, so such an entry is never reported as verified without
/// having been. Best effort: a store that cannot be read or written only costs that
/// memory.
///
/// One file per instance, not one list for all, because the boot path pays for it: a run
/// reads only its own instance's list (usually absent), and the first registration of a
/// boot creates a file instead of replacing one (replacing a file by rename makes ext4
/// write the new one out first: 1.2 ms here when /run is not a tmpfs).
#[derive(Debug)]
pub struct Unproven {
    /// This instance's file, and the directory of all instances' files.
    path: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// What the file must say to be this instance's: boot id and binfmt_misc directory.
    boot_id: String,
    binfmt_dir: String,
    names: std::collections::BTreeSet<String>,
    /// The file as loaded, when it was there: removing it, or replacing it with other
    /// bytes, is then needed (and writing the same bytes again is not).
    loaded: Option<Vec<u8>>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct UnprovenFile {
    boot_id: String,
    binfmt_dir: String,
    names: Vec<String>,
}

impl Unproven {
    /// Instances remembered at most (the least recently written go first).
    const MAX: usize = 16;
    /// A list file larger than this is not one archctl wrote: ignored.
    const MAX_FILE: u64 = 64 << 10;

    /// The list for the binfmt_misc instance at `dir`.
    pub fn load(dir: &std::path::Path) -> Unproven {
        Self::load_in(crate::host::runtime_dir(), dir)
    }

    fn load_in(runtime: Option<std::path::PathBuf>, dir: &std::path::Path) -> Unproven {
        use std::os::unix::{ffi::OsStrExt, fs::MetadataExt};
        let dev = std::fs::metadata(dir).map(|m| m.dev()).unwrap_or(0);
        // FNV-1a: a name, not a secret (the file says which directory it is for).
        let hash = dir
            .as_os_str()
            .as_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        let path = runtime.map(|r| {
            let all = r.join("unproven");
            (all.join(format!("{dev}-{hash:016x}.json")), all)
        });
        let mut me = Unproven {
            path,
            boot_id: crate::host::boot_id().unwrap_or_default(),
            binfmt_dir: dir.display().to_string(),
            names: Default::default(),
            loaded: None,
        };
        let Some((file, _)) = &me.path else {
            return me;
        };
        let bytes = match crate::fsutil::read_bounded(file, Self::MAX_FILE) {
            Ok(b) => b,
            Err(crate::fsutil::OpenError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return me;
            }
            Err(_) => Vec::new(),
        };
        if let Ok(f) = serde_json::from_slice::<UnprovenFile>(&bytes)
            && f.boot_id == me.boot_id
            && f.binfmt_dir == me.binfmt_dir
        {
            me.names = f.names.into_iter().collect();
        }
        me.loaded = Some(bytes);
        me
    }

    /// A list that is neither read nor written: for a run that changes and proves nothing.
    pub fn untouched() -> Unproven {
        Unproven {
            path: None,
            boot_id: String::new(),
            binfmt_dir: String::new(),
            names: Default::default(),
            loaded: None,
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

    /// Write it back (atomically, 0600) unless it says that already, or remove the file
    /// when nothing is left. A new instance's file makes the oldest go when more than
    /// [`Self::MAX`] are kept.
    pub fn store(&mut self) {
        let Some((file, all)) = &self.path else {
            return;
        };
        if self.names.is_empty() {
            if self.loaded.take().is_some() {
                let _ = std::fs::remove_file(file);
            }
            return;
        }
        let list = UnprovenFile {
            boot_id: self.boot_id.clone(),
            binfmt_dir: self.binfmt_dir.clone(),
            names: self.names.iter().cloned().collect(),
        };
        let Ok(json) = serde_json::to_vec(&list) else {
            return;
        };
        if self.loaded.as_ref() == Some(&json) {
            return;
        }
        if std::fs::create_dir_all(all).is_err()
            || crate::fsutil::write_atomic(file, &json, 0o600).is_err()
        {
            return;
        }
        if self.loaded.replace(json).is_none() {
            Self::prune(all, file);
        }
    }

    /// Remove the least recently written list files beyond [`Self::MAX`], never `keep`.
    fn prune(all: &std::path::Path, keep: &std::path::Path) {
        let Ok(rd) = std::fs::read_dir(all) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json")))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if files.len() <= Self::MAX {
            return;
        }
        files.sort();
        let excess = files.len() - Self::MAX;
        for (_, p) in files.into_iter().filter(|(_, p)| p != keep).take(excess) {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Unproven;

    fn files(all: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(all)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A list for `a` holding qemu-arm, stored under `run`: the runtime dir, the list, its file.
    fn stored_arm(
        run: &tempfile::TempDir,
        a: &tempfile::TempDir,
    ) -> (Option<std::path::PathBuf>, Unproven, std::path::PathBuf) {
        let rt = Some(run.path().to_path_buf());
        let mut u = Unproven::load_in(rt.clone(), a.path());
        u.add(["qemu-arm"]);
        u.store();
        let all = run.path().join("unproven");
        let file = all.join(&files(&all)[0]);
        (rt, u, file)
    }

    #[test]
    fn each_instance_keeps_its_own_list_and_an_empty_list_leaves_no_file() {
        let run = tempfile::tempdir().unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let rt = Some(run.path().to_path_buf());
        let mut ua = Unproven::load_in(rt.clone(), a.path());
        assert!(!ua.contains("qemu-arm"));
        ua.add(["qemu-arm", "qemu-ppc"]);
        ua.store();
        let mut ub = Unproven::load_in(rt.clone(), b.path());
        assert!(!ub.contains("qemu-arm"), "b sees a's list");
        ub.add(["qemu-s390x"]);
        ub.store();
        assert_eq!(files(&run.path().join("unproven")).len(), 2);

        let mut ua = Unproven::load_in(rt.clone(), a.path());
        assert!(ua.contains("qemu-arm") && ua.contains("qemu-ppc") && !ua.contains("qemu-s390x"));
        ua.remove("qemu-arm");
        ua.remove("qemu-ppc");
        ua.store();
        assert_eq!(
            files(&run.path().join("unproven")).len(),
            1,
            "a's empty list is removed"
        );
        assert!(Unproven::load_in(rt, b.path()).contains("qemu-s390x"));
    }

    #[test]
    fn a_run_that_remembers_then_proves_leaves_no_file() {
        // What enable does with one list: remember before writing, prove, store again.
        let run = tempfile::tempdir().unwrap();
        let a = tempfile::tempdir().unwrap();
        let rt = Some(run.path().to_path_buf());
        let mut u = Unproven::load_in(rt.clone(), a.path());
        u.add(["qemu-arm"]);
        u.store();
        assert_eq!(files(&run.path().join("unproven")).len(), 1);
        u.remove("qemu-arm");
        u.store();
        assert!(
            files(&run.path().join("unproven")).is_empty(),
            "proven, still listed"
        );
        assert!(!Unproven::load_in(rt, a.path()).contains("qemu-arm"));
    }

    #[test]
    fn the_same_list_is_not_written_again() {
        let (run, a) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (rt, _, file) = stored_arm(&run, &a);
        let ino = |f: &std::path::Path| {
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(f).unwrap())
        };
        let before = ino(&file);
        let mut u = Unproven::load_in(rt.clone(), a.path());
        u.add(["qemu-arm"]);
        u.store();
        assert_eq!(ino(&file), before, "rewritten with the same content");
        let mut u = Unproven::load_in(rt, a.path());
        u.add(["qemu-ppc"]);
        u.store();
        assert_ne!(
            ino(&file),
            before,
            "a changed list is written (a new file renamed over)"
        );
    }

    #[test]
    fn a_list_of_another_boot_or_directory_or_garbage_is_not_believed() {
        let (run, a) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (rt, u, file) = stored_arm(&run, &a);
        let text = std::fs::read_to_string(&file).unwrap();
        let other_boot = text.replace(&u.boot_id, "00000000-0000-0000-0000-000000000000");
        assert_ne!(text, other_boot, "the file names the boot: {text}");
        std::fs::write(&file, other_boot).unwrap();
        assert!(!Unproven::load_in(rt.clone(), a.path()).contains("qemu-arm"));
        std::fs::write(&file, b"{not json").unwrap();
        let mut u = Unproven::load_in(rt, a.path());
        assert!(!u.contains("qemu-arm"));
        u.store();
        assert!(
            !file.exists(),
            "an unreadable list with nothing to keep is removed"
        );
    }

    #[test]
    fn at_most_max_instances_are_remembered_the_newest_kept() {
        let run = tempfile::tempdir().unwrap();
        let rt = Some(run.path().to_path_buf());
        let dirs: Vec<_> = (0..Unproven::MAX + 3)
            .map(|_| tempfile::tempdir().unwrap())
            .collect();
        for d in &dirs {
            let mut u = Unproven::load_in(rt.clone(), d.path());
            u.add(["qemu-arm"]);
            u.store();
        }
        let all = run.path().join("unproven");
        assert_eq!(files(&all).len(), Unproven::MAX, "{:?}", files(&all));
        let last = dirs.last().unwrap();
        assert!(Unproven::load_in(rt, last.path()).contains("qemu-arm"));
    }
}
