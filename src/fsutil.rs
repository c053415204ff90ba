//! File-system helpers shared by the modules that write files.

use std::{
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

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

#[cfg(test)]
mod tests {
    use super::*;

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
