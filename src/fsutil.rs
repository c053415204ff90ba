//! File-system helpers shared by the modules that read and write files: [`open_regular`]
//! and [`read_bounded`] for every path a user or the table names (they never block on a
//! FIFO, never stream a device, never read more than a cap), [`write_atomic`] for writes.

use std::{
    fs::File,
    io::{self, Read, Write},
    os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// Why [`open_regular`] or [`read_bounded`] failed. Displays as `PATH: why`.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// open(2), fstat(2) or read(2) failed (`NotFound` when the path does not exist).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The path names something that is not a regular file.
    #[error("{}: is {what}, not a regular file", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    /// The file holds more than the caller's cap.
    #[error("{}: larger than {}, the most archctl reads of it", path.display(), human_size(*limit))]
    TooLarge { path: PathBuf, limit: u64 },
}

impl OpenError {
    /// The I/O error, when that is what it is (to tell "absent" from the rest).
    pub fn io(&self) -> Option<&io::Error> {
        match self {
            OpenError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `1 MiB`, `100 bytes`: caps in messages.
pub fn human_size(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// What a file type is when it is not a regular file, for messages (`a FIFO (named
/// pipe)`, `a directory`...); None for a regular file.
pub fn special_kind(t: std::fs::FileType) -> Option<&'static str> {
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    })
}

fn describe(t: std::fs::FileType) -> &'static str {
    special_kind(t).unwrap_or("a regular file")
}

/// Open `path` for reading only if it is a regular file (symlinks followed).
///
/// What decides is fstat(2) on the opened descriptor, so a path swapped between a check
/// and the open is still caught (no stat-then-open race): FIFOs, devices, sockets and
/// directories are [`OpenError::NotRegular`]. The open itself is
/// `O_NONBLOCK|O_NOCTTY|O_CLOEXEC`, so a FIFO without a writer cannot block it and a
/// terminal cannot become the controlling one; O_NONBLOCK has no effect on reading a
/// regular file. A stat(2) first keeps a path that already names something else from
/// being opened at all (opening some devices acts: a watchdog arms, a tape rewinds), and
/// answers "absent" without an open.
pub fn open_regular(path: &Path) -> Result<File, OpenError> {
    let io_err = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_regular = |t: std::fs::FileType| OpenError::NotRegular {
        path: path.to_path_buf(),
        what: describe(t),
    };
    let t = std::fs::metadata(path).map_err(io_err)?.file_type();
    if !t.is_file() {
        return Err(not_regular(t));
    }
    open_checked(path)
}

/// The open and the fstat of [`open_regular`], which alone decide (and never block),
/// without its stat(2) first: for paths only root can place files at.
pub fn open_checked(path: &Path) -> Result<File, OpenError> {
    let io_err = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err)?;
    let t = f.metadata().map_err(io_err)?.file_type();
    if !t.is_file() {
        return Err(OpenError::NotRegular {
            path: path.to_path_buf(),
            what: describe(t),
        });
    }
    Ok(f)
}

/// The whole of the regular file `path` ([`open_regular`]), at most `limit` bytes: a
/// longer file (or one that keeps growing while read, as some /proc files do) is
/// [`OpenError::TooLarge`], never read further than `limit + 1` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, OpenError> {
    read_opened(open_regular(path)?, path, limit)
}

/// The whole of the already opened `f` (named `path` in errors), checked on the
/// descriptor to be a regular file, at most `limit` bytes as [`read_bounded`].
pub fn read_opened(f: File, path: &Path, limit: u64) -> Result<Vec<u8>, OpenError> {
    let t = f
        .metadata()
        .map_err(|source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .file_type();
    if !t.is_file() {
        return Err(OpenError::NotRegular {
            path: path.to_path_buf(),
            what: describe(t),
        });
    }
    let mut buf = Vec::new();
    f.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(OpenError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(buf)
}

/// The directory a file is in: `.` for a bare file name.
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Why [`write_atomic`] failed: the directory when the temporary file could not be
/// created in it, else the target.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Write `bytes` to `path` with permissions `mode` (exactly, not masked by the umask)
/// through a temporary file in the same directory renamed over it, so readers see the
/// old file or the new one, never half of one. The directory must exist. No fsync:
/// atomic against concurrent readers and failed writes, not against power loss.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|source| WriteError {
        path: dir.to_path_buf(),
        source,
    })?;
    let at_target = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    tmp.write_all(bytes).map_err(at_target)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(at_target)?;
    tmp.persist(path).map_err(|e| at_target(e.error))?;
    Ok(())
}

/// How [`rename_exchange`] and [`rename_noreplace`] move a file.
const RENAME_NOREPLACE: libc::c_uint = libc::RENAME_NOREPLACE;
const RENAME_EXCHANGE: libc::c_uint = libc::RENAME_EXCHANGE;

/// renameat2(2) through the raw system call: the C library's wrapper is missing from
/// older musl, and nix offers it for glibc only.
fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both paths are NUL-terminated and outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Swap `a` and `b` in one step (both must exist, on one file system). Fails with
/// `EINVAL` where the file system cannot exchange.
pub fn rename_exchange(a: &Path, b: &Path) -> io::Result<()> {
    renameat2(a, b, RENAME_EXCHANGE)
}

/// Move `from` to `to`, failing with `EEXIST` instead of replacing a file that is there.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    renameat2(from, to, RENAME_NOREPLACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_regular_files_only_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // No writer: a plain open(2) would block here forever.
        for (p, what) in [
            (fifo.as_path(), "a FIFO (named pipe)"),
            (Path::new("/dev/zero"), "a character device"),
            (dir.path(), "a directory"),
        ] {
            match open_regular(p) {
                Err(OpenError::NotRegular { path, what: w }) => {
                    assert_eq!((path.as_path(), w), (p, what));
                }
                other => panic!("{}: {other:?}", p.display()),
            }
            let e = read_bounded(p, 10).unwrap_err().to_string();
            assert_eq!(e, format!("{}: is {what}, not a regular file", p.display()));
        }
        // A path that became a FIFO after the stat is caught by the open and fstat alone,
        // which do not block either.
        assert!(matches!(
            open_checked(&fifo),
            Err(OpenError::NotRegular {
                what: "a FIFO (named pipe)",
                ..
            })
        ));
        let missing = open_regular(&dir.path().join("missing")).unwrap_err();
        assert_eq!(
            missing.io().map(io::Error::kind),
            Some(io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn reads_up_to_the_cap_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_bounded(&p, 10).unwrap(), b"0123456789");
        let e = read_bounded(&p, 9).unwrap_err();
        assert!(matches!(e, OpenError::TooLarge { limit: 9, .. }), "{e:?}");
        assert!(
            e.to_string()
                .ends_with("larger than 9 bytes, the most archctl reads of it")
        );
        std::fs::write(&p, vec![b'x'; 2 << 20]).unwrap();
        let e = read_bounded(&p, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("larger than 1 MiB"), "{e}");
    }

    #[test]
    fn replaces_the_file_with_the_given_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"old").unwrap();
        write_atomic(&p, b"new", 0o640).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        // Only the target is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn names_the_directory_when_no_temporary_file_can_be_made() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = write_atomic(&missing.join("f"), b"x", 0o644).unwrap_err();
        assert_eq!(e.path, missing);
    }
}
