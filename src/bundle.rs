//! Emulator bundles: what is installed (`emulators list`), a tar.gz of the installed
//! static emulators to carry to an offline guest (`emulators pack`), and installing
//! one (`emulators install`): checksum first, nothing but regular files at the top
//! level, every binary checked as static and for this host, installed atomically.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    arch::{Rule, Table, hex},
    emulator::{self, Search},
    host::Native,
};

/// Default destination of `emulators install` (searched by `enable` too).
pub const DEFAULT_DEST: &str = "/usr/local/lib/archctl/emulators";
/// Largest bundle archctl downloads or reads (Debian 12's static emulators pack to
/// 86 MB, 371 MB unpacked).
pub const MAX_BUNDLE: u64 = 512 << 20;
/// Largest file in a bundle (Debian 12's largest emulator is 14 MB).
pub const MAX_FILE: u64 = 128 << 20;
/// Most bytes a bundle unpacks to, headers included: at most [`UNPACK_RATIO`] times its
/// own size plus [`UNPACK_SLACK`], and never more than this (a gzip of 1.5 MB can
/// stand for 1.5 GiB).
pub const MAX_UNPACKED: u64 = 1 << 30;
pub const UNPACK_RATIO: u64 = 16;
pub const UNPACK_SLACK: u64 = 64 << 20;
/// Most entries in a bundle (there are 35 QEMU linux-user targets).
pub const MAX_ENTRIES: usize = 256;
/// A download stalls when less than this arrives within `--timeout` seconds.
pub const MIN_PROGRESS: u64 = 64 << 10;
/// The whole download (connecting included) may take `--timeout` times this.
pub const DEADLINE_FACTOR: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "bundle {source_name}: checksum mismatch: expected sha256 {expected}, got {actual}; nothing was installed"
    )]
    Checksum {
        source_name: String,
        expected: String,
        actual: String,
    },
    #[error("bundle {source_name}: {why}; nothing was installed")]
    Bad { source_name: String, why: String },
    #[error("download {url}: {why}; nothing was installed")]
    Download { url: String, why: String },
    #[error("invalid --sha256 \"{0}\": 64 hex digits")]
    BadSha(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted by a signal; nothing was installed")]
    Interrupted,
    #[error("{}: {source}; {undone}", path.display())]
    Commit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        undone: Undone,
    },
    #[error(
        "{} exists and is {what}: archctl replaces only files and symbolic links there; nothing was installed",
        path.display()
    )]
    InTheWay { path: PathBuf, what: &'static str },
    #[error(
        "no emulators to pack: none of the selected architectures has a static emulator installed"
    )]
    NothingToPack,
}

impl BundleError {
    pub fn hint(&self) -> Option<String> {
        match self {
            BundleError::Checksum { .. } => {
                Some("check the checksum you were given, and download the bundle again".into())
            }
            BundleError::NothingToPack => {
                Some("apt-get install qemu-user-static, or pass --emulator-dir".into())
            }
            BundleError::InTheWay { .. } => {
                Some("move it out of the way, or choose another --dest".into())
            }
            _ => None,
        }
    }
}

/// `e`, unless a signal has arrived: then what failed was the signal's doing.
fn or_interrupted(e: BundleError) -> BundleError {
    // A failed commit says itself what it took back.
    if crate::interrupt::interrupted() && !matches!(e, BundleError::Commit { .. }) {
        BundleError::Interrupted
    } else {
        e
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One installed emulator.
#[derive(Debug, Clone, Serialize)]
pub struct EmulatorInfo {
    pub arch: String,
    pub path: Option<String>,
    /// First line of `--version`.
    pub version: Option<String>,
    pub r#static: bool,
    /// Static and for this host: works with the F flag inside containers.
    pub usable_with_f: bool,
    pub problem: Option<String>,
}

/// `archctl emulators list`: every target with the emulator the search finds (versions
/// asked in parallel).
pub fn list(table: &Table, native: &Native, search: &Search) -> Vec<EmulatorInfo> {
    let rules: Vec<&Rule> = table.rules().iter().collect();
    std::thread::scope(|s| {
        let hs: Vec<_> = rules
            .iter()
            .map(|r| s.spawn(move || info(table, native, search, r)))
            .collect();
        hs.into_iter()
            .zip(&rules)
            .map(|(h, r)| {
                h.join().unwrap_or_else(|_| EmulatorInfo {
                    arch: r.name.clone(),
                    path: None,
                    version: None,
                    r#static: false,
                    usable_with_f: false,
                    problem: Some("inspection failed".into()),
                })
            })
            .collect()
    })
}

fn info(table: &Table, native: &Native, search: &Search, r: &Rule) -> EmulatorInfo {
    let mut i = EmulatorInfo {
        arch: r.name.clone(),
        path: None,
        version: None,
        r#static: false,
        usable_with_f: false,
        problem: None,
    };
    match search.find(r, table, native, false) {
        Ok(e) => {
            i.path = Some(e.path.display().to_string());
            i.r#static = e.info.is_static();
            i.usable_with_f = i.r#static;
            if !i.r#static {
                i.problem = Some(format!(
                    "dynamically linked ({}): fails inside containers",
                    e.info.interpreter.clone().unwrap_or_default()
                ));
            }
            i.version = std::process::Command::new(&e.path)
                .arg("--version")
                .stdin(std::process::Stdio::null())
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .map(str::to_string)
                });
        }
        Err(emulator::EmulatorError::NotFound { .. }) => {}
        Err(e) => i.problem = Some(e.to_string()),
    }
    i
}

/// `archctl emulators pack`.
#[derive(Debug, Clone, Serialize)]
pub struct PackReport {
    pub file: String,
    pub sha256: String,
    pub emulators: Vec<String>,
}

/// Pack the static emulators of `rules` into a tar.gz (files `qemu-<arch>-static`).
pub fn pack(
    table: &Table,
    native: &Native,
    search: &Search,
    rules: &[&Rule],
    output: &Path,
) -> Result<PackReport, BundleError> {
    let mut names = Vec::new();
    let mut files = Vec::new();
    for r in rules {
        let name = format!("qemu-{}-static", r.emulator);
        if names.contains(&name) {
            continue;
        }
        if let Ok(e) = search.find(r, table, native, true) {
            names.push(name);
            files.push(e.path);
        }
    }
    if names.is_empty() {
        return Err(BundleError::NothingToPack);
    }
    let dir = crate::fsutil::parent_dir(output);
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    {
        let gz = flate2::write::GzEncoder::new(tmp.as_file(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        for (name, path) in names.iter().zip(&files) {
            let mut f = std::fs::File::open(path).map_err(io(path))?;
            let len = f.metadata().map_err(io(path))?.len();
            let mut h = tar::Header::new_gnu();
            h.set_size(len);
            h.set_mode(0o755);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mtime(0);
            h.set_cksum();
            tar.append_data(&mut h, name, &mut f).map_err(io(path))?;
        }
        let gz = tar.into_inner().map_err(io(output))?;
        gz.finish().map_err(io(output))?;
    }
    let mut f = std::fs::File::open(tmp.path()).map_err(io(output))?;
    let sha256 =
        copy_hashing(&mut f, &mut std::io::sink(), u64::MAX).map_err(|why| BundleError::Bad {
            source_name: output.display().to_string(),
            why,
        })?;
    tmp.persist(output).map_err(|e| io(output)(e.error))?;
    Ok(PackReport {
        file: output.display().to_string(),
        sha256,
        emulators: names,
    })
}

/// `archctl emulators install`.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    pub source: String,
    pub sha256: String,
    pub dest: String,
    pub installed: Vec<String>,
}

/// Fetch (file or http(s) URL), verify the checksum, check every entry and binary,
/// then move the emulators into `dest`: all of them or none. Everything is staged in a
/// directory inside `dest`, which is removed on every error and on SIGINT, SIGTERM,
/// SIGHUP or SIGQUIT (recorded while this runs, and answered within a fraction of a
/// second); directories it had to create for `dest` are removed again too.
pub fn install(
    table: &Table,
    native: &Native,
    source: &str,
    sha256: &str,
    dest: &Path,
    only: &[&Rule],
    timeout: std::time::Duration,
) -> Result<InstallReport, BundleError> {
    let expected = sha256.trim().to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(BundleError::BadSha(sha256.to_string()));
    }
    let _signals = crate::interrupt::Guard::install();
    let created = create_dirs(dest)?;
    let result =
        install_into(table, native, source, &expected, dest, only, timeout).map_err(or_interrupted);
    if result.is_err() {
        // Leave the system as it was: no empty destination (or parents of it) either.
        for d in created.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
    result
}

/// `create_dir_all`, returning the directories it created, outermost first.
fn create_dirs(dest: &Path) -> Result<Vec<PathBuf>, BundleError> {
    let mut missing = Vec::new();
    let mut d = Some(dest);
    while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
        if std::fs::symlink_metadata(p).is_ok() {
            break;
        }
        missing.push(p.to_path_buf());
        d = p.parent();
    }
    missing.reverse();
    let mut created = Vec::new();
    for p in missing {
        match std::fs::create_dir(&p) {
            Ok(()) => created.push(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                for d in created.iter().rev() {
                    let _ = std::fs::remove_dir(d);
                }
                return Err(io(&p)(e));
            }
        }
    }
    if !dest.is_dir() {
        return Err(io(dest)(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    Ok(created)
}

fn install_into(
    table: &Table,
    native: &Native,
    source: &str,
    expected: &str,
    dest: &Path,
    only: &[&Rule],
    timeout: std::time::Duration,
) -> Result<InstallReport, BundleError> {
    // Staging lives next to the destination, so the final renames stay on one
    // filesystem; it is removed whatever happens.
    let staging = tempfile::Builder::new()
        .prefix(".archctl-install-")
        .tempdir_in(dest)
        .map_err(io(dest))?;
    let archive = staging.path().join("bundle.tar.gz");
    let actual = if source.starts_with("http://") || source.starts_with("https://") {
        download(source, &archive, timeout)?
    } else {
        let mut f =
            crate::fsutil::open_regular(Path::new(source)).map_err(|e| BundleError::Bad {
                source_name: source.to_string(),
                why: e.to_string(),
            })?;
        let mut out = std::fs::File::create(&archive).map_err(io(&archive))?;
        copy_hashing(&mut f, &mut out, MAX_BUNDLE).map_err(|why| BundleError::Bad {
            source_name: source.to_string(),
            why,
        })?
    };
    if actual != expected {
        return Err(BundleError::Checksum {
            source_name: source.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    let bad = |why: String| BundleError::Bad {
        source_name: source.to_string(),
        why,
    };
    let unpacked_dir = staging.path().join("files");
    std::fs::create_dir(&unpacked_dir).map_err(io(&unpacked_dir))?;
    let f = std::fs::File::open(&archive).map_err(io(&archive))?;
    let packed = f.metadata().map_err(io(&archive))?.len();
    let limit = unpack_limit(packed);
    let over = || {
        bad(format!(
            "unpacks to more than {limit} bytes, more than archctl accepts for a bundle of {packed} bytes (at most {UNPACK_RATIO} times its size plus {} MiB, never more than {} MiB)",
            UNPACK_SLACK >> 20,
            MAX_UNPACKED >> 20
        ))
    };
    let capped = Capped::new(flate2::read::GzDecoder::new(f), limit);
    let hit = capped.hit.clone();
    let mut tar = tar::Archive::new(capped);
    let mut names = Vec::new();
    let mut unpacked = 0u64;
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| {
            if hit.get() {
                over()
            } else {
                bad(format!("broken archive: {e}"))
            }
        })?;
        if names.len() >= MAX_ENTRIES {
            return Err(bad(format!(
                "more than {MAX_ENTRIES} entries, more than archctl accepts"
            )));
        }
        let raw = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let shown = raw.display().to_string();
        let mut comps = raw
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir));
        let name = match (comps.next(), comps.next()) {
            (Some(std::path::Component::Normal(n)), None) => n.to_string_lossy().into_owned(),
            _ => {
                return Err(bad(format!(
                    "entry \"{shown}\" is not a plain file name (no directories, .. or absolute paths)"
                )));
            }
        };
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(bad(format!(
                "entry \"{shown}\" is a {:?}, not a regular file (links are refused)",
                entry.header().entry_type()
            )));
        }
        if !name.starts_with("qemu-") || names.contains(&name) {
            return Err(bad(format!(
                "entry \"{shown}\" is not a qemu-<arch> emulator, or comes twice"
            )));
        }
        let size = entry.header().size().map_err(|e| bad(e.to_string()))?;
        if size > MAX_FILE {
            return Err(bad(format!(
                "entry \"{shown}\" is {size} bytes, more than the {} MiB archctl accepts for one file",
                MAX_FILE >> 20
            )));
        }
        // Refused from the header, before anything is written.
        unpacked += size;
        if unpacked > limit {
            return Err(over());
        }
        let path = unpacked_dir.join(&name);
        let mut out = std::fs::File::create(&path).map_err(io(&path))?;
        std::io::copy(&mut (&mut entry).take(size), &mut out).map_err(|e| {
            if hit.get() {
                over()
            } else {
                bad(format!("entry \"{shown}\": {e}"))
            }
        })?;
        names.push(name);
    }
    names.sort();
    let wanted: Vec<String> = if only.is_empty() {
        names.clone()
    } else {
        let mut w = Vec::new();
        for r in only {
            let n = format!("qemu-{}-static", r.emulator);
            if !names.contains(&n) {
                return Err(bad(format!("no {n} in it (it has {})", names.join(", "))));
            }
            w.push(n);
        }
        w
    };
    if wanted.is_empty() {
        return Err(bad("it holds no emulators".into()));
    }
    for n in &wanted {
        use std::os::unix::fs::PermissionsExt;
        let p = unpacked_dir.join(n);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).map_err(io(&p))?;
        emulator::check(&p, table, native, true).map_err(|e| bad(format!("{n}: {e}")))?;
    }
    if crate::interrupt::interrupted() {
        return Err(BundleError::Interrupted);
    }
    let installed = commit(&unpacked_dir, dest, &wanted)?;
    Ok(InstallReport {
        source: source.to_string(),
        sha256: actual,
        dest: dest.display().to_string(),
        installed,
    })
}

/// One emulator moved into the destination, and how to take it back.
enum Moved {
    /// Nothing was there: remove it.
    Created(PathBuf),
    /// It replaced a file, which now waits at `old` (in staging): move that back.
    Replaced { to: PathBuf, old: PathBuf },
}

/// What a failed commit took back, or could not.
#[derive(Debug)]
pub struct Undone {
    pub errors: Vec<String>,
}

impl std::fmt::Display for Undone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.errors.is_empty() {
            f.write_str("nothing was installed (the files already moved are back as they were)")
        } else {
            write!(f, "rollback incomplete: {}", self.errors.join("; "))
        }
    }
}

fn undo(moved: Vec<Moved>) -> Undone {
    let mut errors = Vec::new();
    for m in moved.into_iter().rev() {
        let (r, what) = match &m {
            Moved::Created(to) => (std::fs::remove_file(to), to),
            Moved::Replaced { to, old } => (std::fs::rename(old, to), to),
        };
        if let Err(e) = r {
            let state = match m {
                Moved::Created(_) => "stays installed",
                Moved::Replaced { .. } => "stays replaced",
            };
            errors.push(format!("{} {state}: {e}", what.display()));
        }
    }
    Undone { errors }
}

/// Move `names` from `staging` into `dest`, all or none: each with one rename, a file
/// already there exchanged with the new one in one step (`RENAME_EXCHANGE`, so the old
/// one is never missing and waits in staging until the last has landed). A failure or
/// a signal on the way moves every one back.
fn commit(staging: &Path, dest: &Path, names: &[String]) -> Result<Vec<String>, BundleError> {
    // Refused before anything moves: a directory (or stranger) where an emulator goes.
    for n in names {
        let to = dest.join(n);
        if let Ok(m) = std::fs::symlink_metadata(&to) {
            let t = m.file_type();
            if !t.is_file() && !t.is_symlink() {
                return Err(BundleError::InTheWay {
                    path: to,
                    what: crate::fsutil::special_kind(t).unwrap_or("a directory"),
                });
            }
        }
    }
    let mut moved = Vec::new();
    for n in names {
        let from = staging.join(n);
        let to = dest.join(n);
        let r = if crate::interrupt::interrupted() {
            Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "interrupted by a signal",
            ))
        } else {
            move_in(&from, &to, staging)
        };
        match r {
            Ok(m) => moved.push(m),
            Err(source) => {
                return Err(BundleError::Commit {
                    path: to,
                    source,
                    undone: undo(moved),
                });
            }
        }
    }
    Ok(names
        .iter()
        .map(|n| dest.join(n).display().to_string())
        .collect())
}

fn move_in(from: &Path, to: &Path, staging: &Path) -> std::io::Result<Moved> {
    use crate::fsutil::{rename_exchange, rename_noreplace};
    match rename_noreplace(from, to) {
        Ok(()) => return Ok(Moved::Created(to.to_path_buf())),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // A file system without renameat2 flags: a plain rename over nothing.
            if std::fs::symlink_metadata(to).is_err() {
                std::fs::rename(from, to)?;
                return Ok(Moved::Created(to.to_path_buf()));
            }
        }
        Err(e) => return Err(e),
    }
    match rename_exchange(from, to) {
        // The old file is now where the new one was.
        Ok(()) => Ok(Moved::Replaced {
            to: to.to_path_buf(),
            old: from.to_path_buf(),
        }),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // No exchange here: move the old one aside first, then the new one in.
            let mut old = staging.as_os_str().to_owned();
            old.push("/.old-");
            old.push(to.file_name().unwrap_or_default());
            let old = PathBuf::from(old);
            std::fs::rename(to, &old)?;
            if let Err(e) = std::fs::rename(from, to) {
                let _ = std::fs::rename(&old, to);
                return Err(e);
            }
            Ok(Moved::Replaced {
                to: to.to_path_buf(),
                old,
            })
        }
        Err(e) => Err(e),
    }
}

/// How many bytes a bundle of `packed` bytes may unpack to.
pub fn unpack_limit(packed: u64) -> u64 {
    packed
        .saturating_mul(UNPACK_RATIO)
        .saturating_add(UNPACK_SLACK)
        .min(MAX_UNPACKED)
}

/// A reader that fails after `left` bytes (and says so in `hit`): whatever reads the
/// decompressed stream, tar's own GNU long-name and PAX buffers included, gets no more.
struct Capped<R> {
    inner: R,
    left: u64,
    hit: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Capped<R> {
    fn new(inner: R, limit: u64) -> Capped<R> {
        Capped {
            inner,
            left: limit,
            hit: Default::default(),
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if crate::interrupt::interrupted() {
            return Err(std::io::Error::other("interrupted by a signal"));
        }
        if self.left == 0 {
            // At the cap: fine if the stream ends here, an error if there is more.
            let n = self.inner.read(&mut [0u8; 1])?;
            if n == 0 {
                return Ok(0);
            }
            self.hit.set(true);
            return Err(std::io::Error::other("unpacked-size cap reached"));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Copy up to `limit` bytes, returning the sha256 of what was copied.
fn copy_hashing(r: &mut impl Read, w: &mut impl Write, limit: u64) -> Result<String, String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        if crate::interrupt::interrupted() {
            return Err("interrupted by a signal".into());
        }
        let n = r.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(format!(
                "larger than {} MiB, more than archctl accepts",
                limit >> 20
            ));
        }
        hasher.update(&buf[..n]);
        w.write_all(&buf[..n]).map_err(|e| e.to_string())?;
    }
    Ok(hex(&hasher.finalize()))
}

/// How often a download looks for a signal while it waits.
const SIGNAL_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// `until`, or sooner: the next look for a signal.
fn poll_until(until: tokio::time::Instant) -> tokio::time::Instant {
    until.min(tokio::time::Instant::now() + SIGNAL_POLL)
}

/// Download to `to`, hashing as it comes, with a progress line on a terminal. Bounded
/// three ways: at most [`MAX_BUNDLE`] bytes; at least [`MIN_PROGRESS`] bytes (or the
/// rest) every `timeout` (the answer's head within `timeout`); and the whole download
/// within `timeout` × [`DEADLINE_FACTOR`].
fn download(url: &str, to: &Path, timeout: std::time::Duration) -> Result<String, BundleError> {
    use std::io::IsTerminal;
    use tokio::time::{Instant, timeout_at};
    let err = |why: String| BundleError::Download {
        url: url.to_string(),
        why,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(e.to_string()))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(concat!("archctl/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
        .read_timeout(timeout)
        .build()
        .map_err(|e| err(e.to_string()))?;
    let progress = std::io::stderr().is_terminal();
    let secs = timeout.as_secs();
    runtime.block_on(async {
        let start = Instant::now();
        let deadline = start + timeout * DEADLINE_FACTOR;
        let late = |got: u64| {
            err(format!(
                "not finished after {} s ({got} bytes so far): the whole download may take {DEADLINE_FACTOR} times --timeout",
                secs * u64::from(DEADLINE_FACTOR)
            ))
        };
        let mut send = std::pin::pin!(client.get(url).send());
        let sent = loop {
            match timeout_at(poll_until(start + timeout), &mut send).await {
                Ok(sent) => break sent,
                Err(_) if crate::interrupt::interrupted() => return Err(BundleError::Interrupted),
                Err(_) if Instant::now() >= start + timeout => {
                    return Err(err(format!("no answer within {secs} s (--timeout)")));
                }
                Err(_) => {}
            }
        };
        let mut resp = sent.map_err(|e| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(x) = src {
                s = format!("{s}: {x}");
                src = x.source();
            }
            err(s)
        })?;
        if !resp.status().is_success() {
            return Err(err(format!("server answered {}", resp.status())));
        }
        let too_large = |size: String| {
            err(format!(
                "{size} bytes, more than the {} MiB archctl downloads",
                MAX_BUNDLE >> 20
            ))
        };
        let total = resp.content_length();
        if let Some(t) = total.filter(|t| *t > MAX_BUNDLE) {
            return Err(too_large(t.to_string()));
        }
        let mut out = std::fs::File::create(to).map_err(io(to))?;
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        // The current progress window: when it ends and what arrived in it.
        let mut window_end = Instant::now() + timeout;
        let mut window_got = 0u64;
        loop {
            let next = timeout_at(poll_until(window_end.min(deadline)), resp.chunk()).await;
            if crate::interrupt::interrupted() {
                return Err(BundleError::Interrupted);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(late(got));
            }
            if now >= window_end {
                // 64 KiB, or what is left of a body of known length.
                let rest = total.map_or(u64::MAX, |t| t.saturating_sub(got - window_got));
                if window_got < MIN_PROGRESS.min(rest) {
                    return Err(err(format!(
                        "stalled: {window_got} bytes in the last {secs} s ({got} in all), less than the {} KiB archctl waits --timeout seconds for",
                        MIN_PROGRESS >> 10
                    )));
                }
                window_end = now + timeout;
                window_got = 0;
            }
            let chunk = match next {
                // A poll for signals, the end of a progress window: wait on.
                Err(_) => continue,
                Ok(Err(e)) => return Err(err(format!("interrupted after {got} bytes: {e}"))),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            got += chunk.len() as u64;
            window_got += chunk.len() as u64;
            if got > MAX_BUNDLE {
                return Err(too_large(format!("more than {got}")));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).map_err(io(to))?;
            if progress {
                match total {
                    Some(t) => eprint!("\rarchctl: downloading {}%", got * 100 / t.max(1)),
                    None => eprint!("\rarchctl: downloading {} KiB", got / 1024),
                }
            }
        }
        if progress {
            eprintln!();
        }
        if let Some(t) = total
            && got != t
        {
            return Err(err(format!("truncated: {got} of {t} bytes")));
        }
        Ok(hex(&hasher.finalize()))
    })
}
