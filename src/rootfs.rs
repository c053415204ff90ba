//! Files inside another root directory (`--root`), resolved as chroot(2) would: [`Root`].
//!
//! Every path is relative to the root and every component of it is resolved inside the
//! root: a symbolic link is followed, but an absolute target is read from the root (as
//! in a chroot, `R/etc/x -> /usr/x` is `R/usr/x`) and `..` stops at the root, so no
//! link can lead a read or a write out of it. With openat2(2) (Linux 5.6) the kernel
//! resolves the directories (`RESOLVE_IN_ROOT`); without it (ENOSYS), directories are
//! opened one component at a time with `O_NOFOLLOW` along a path resolved here.
//! Either way the last step is a `*at` call on a directory descriptor inside the root
//! with a plain name, so a link swapped in meanwhile cannot lead out.
//!
//! Nothing is created through a dangling link (one whose target is missing in the
//! root): that is [`RootError::Dangling`], never a directory made wherever it points.
//! A link that resolves to itself (`R/etc -> /etc` is `R/etc` again) is
//! [`RootError::Loop`], as ELOOP would be in a chroot. For the root `/` all this is
//! ordinary path resolution.

use std::{
    collections::VecDeque,
    ffi::{OsStr, OsString},
    fs::File,
    io::{self, Write},
    os::{
        fd::{AsFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Component, Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{OFlag, OpenHow, ResolveFlag},
    sys::stat::Mode,
};

use crate::fsutil::{self, OpenError};

/// Symbolic links followed in one path at most (the kernel's limit too).
const MAX_LINKS: usize = 40;

/// Why an operation in a [`Root`] failed. Paths are shown under the root as given.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Read(#[from] OpenError),
    /// A link on the way points at something missing in the root.
    #[error(
        "{}: a symbolic link to {}, which does not exist in the root {}",
        link.display(), target.display(), root.display()
    )]
    Dangling {
        link: PathBuf,
        target: PathBuf,
        root: PathBuf,
    },
    /// More than [`MAX_LINKS`] links, or a link back to itself.
    #[error(
        "{}: too many levels of symbolic links inside the root {} (an absolute link is read from the root, as in a chroot)",
        path.display(), root.display()
    )]
    Loop { path: PathBuf, root: PathBuf },
    /// The root itself cannot be opened as a directory.
    #[error("root {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl RootError {
    pub fn hint(&self) -> Option<String> {
        match self {
            RootError::Open { .. } => Some(
                "--root must be an existing directory: the image's root file system".into(),
            ),
            RootError::Dangling { .. } | RootError::Loop { .. } => Some(
                "replace the link by a directory or file, or point it at one inside the root (absolute links are read from the root)".into(),
            ),
            _ => None,
        }
    }
}

/// A directory that paths are resolved inside of. See the module documentation.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
    /// openat2(2) works here; else the component walk.
    openat2: bool,
}

/// A path resolved inside the root: no component is a link (as far as it exists).
struct Resolved {
    path: PathBuf,
    /// The link whose target was missing, when the path runs through one.
    dangling: Option<(PathBuf, PathBuf)>,
}

fn dir_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// The normal components of a root-relative path (`/` and `.` dropped, `..` kept).
fn components(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Root {
    /// The directory `path` (symlinks in `path` itself are followed, as the user named
    /// it).
    pub fn open(path: &Path) -> Result<Root, RootError> {
        let fd =
            nix::fcntl::open(path, dir_flags(), Mode::empty()).map_err(|e| RootError::Open {
                path: path.to_path_buf(),
                source: errno(e),
            })?;
        let how = OpenHow::new()
            .flags(dir_flags())
            .resolve(ResolveFlag::RESOLVE_IN_ROOT);
        let openat2 = nix::fcntl::openat2(&fd, ".", how).is_ok();
        Ok(Root {
            path: path.to_path_buf(),
            fd,
            openat2,
        })
    }

    /// The root as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Is this the running system's `/`?
    pub fn is_host_root(&self) -> bool {
        self.path == Path::new("/")
    }

    /// `rel` as seen from outside, for messages and reports: the root joined with it.
    pub fn shown(&self, rel: &Path) -> PathBuf {
        self.path.join(rel.strip_prefix("/").unwrap_or(rel))
    }

    fn io(&self, rel: &Path) -> impl FnOnce(io::Error) -> RootError + '_ {
        let path = self.shown(rel);
        move |source| {
            if source.raw_os_error() == Some(libc::ELOOP) {
                RootError::Loop {
                    path,
                    root: self.path.clone(),
                }
            } else {
                RootError::Io { path, source }
            }
        }
    }

    /// A descriptor of the directory `rel`, resolved inside the root.
    fn dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        let rel_str: &OsStr = if rel.as_os_str().is_empty() {
            OsStr::new(".")
        } else {
            rel.as_os_str()
        };
        if self.openat2 {
            let how = OpenHow::new()
                .flags(dir_flags())
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
            // EAGAIN: a rename elsewhere in the file system raced the lookup of a `..`;
            // the kernel asks to retry.
            for _ in 0..8 {
                match nix::fcntl::openat2(&self.fd, rel_str, how) {
                    Err(Errno::EAGAIN) => continue,
                    Err(Errno::ENOSYS) => break,
                    r => return r.map_err(errno),
                }
            }
        }
        self.walk(rel)
    }

    /// The fallback of [`Root::dir`]: one component at a time, never following a link
    /// (`rel` is already resolved by [`Root::resolve`], so it names none).
    fn walk(&self, rel: &Path) -> io::Result<OwnedFd> {
        let mut fd = self.fd.try_clone()?;
        for c in components(rel) {
            if c == ".." {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            fd = nix::fcntl::openat(
                &fd,
                c.as_os_str(),
                dir_flags() | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )
            .map_err(errno)?;
        }
        Ok(fd)
    }

    /// `rel` with every link in it followed inside the root.
    fn resolve(&self, rel: &Path) -> Result<Resolved, RootError> {
        let mut todo: VecDeque<(OsString, Option<usize>)> =
            components(rel).map(|c| (c, None)).collect();
        let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut out = PathBuf::new();
        let mut missing = false;
        let mut dangling = None;
        while let Some((c, from)) = todo.pop_front() {
            if c == ".." {
                out.pop();
                continue;
            }
            if missing {
                out.push(&c);
                continue;
            }
            let dir = match self.dir(&out) {
                Ok(d) => d,
                Err(e) => return Err(self.io(&out)(e)),
            };
            match nix::fcntl::readlinkat(&dir, c.as_os_str()) {
                Ok(target) => {
                    if links.len() >= MAX_LINKS {
                        // Name the link that was followed once too often.
                        let path = links.last().map_or(rel, |(l, _)| l.as_path());
                        return Err(RootError::Loop {
                            path: self.shown(path),
                            root: self.path.clone(),
                        });
                    }
                    let target = PathBuf::from(target);
                    links.push((out.join(&c), target.clone()));
                    if target.is_absolute() {
                        out = PathBuf::new();
                    }
                    let id = links.len() - 1;
                    for t in components(&target).collect::<Vec<_>>().into_iter().rev() {
                        todo.push_front((t, Some(id)));
                    }
                }
                Err(Errno::EINVAL) => out.push(&c),
                Err(Errno::ENOENT) => {
                    missing = true;
                    if let Some(id) = from {
                        dangling = Some(links[id].clone());
                    }
                    out.push(&c);
                }
                Err(e) => return Err(self.io(&out.join(&c))(errno(e))),
            }
        }
        Ok(Resolved {
            path: out,
            dangling,
        })
    }

    /// [`Root::resolve`], a dangling link being an error (for what creates).
    fn resolve_existing(&self, rel: &Path) -> Result<PathBuf, RootError> {
        let r = self.resolve(rel)?;
        match r.dangling {
            Some((link, target)) => Err(RootError::Dangling {
                link: self.shown(&link),
                target,
                root: self.path.clone(),
            }),
            None => Ok(r.path),
        }
    }

    /// Fails as a write at `rel` would on the way there (a dangling link, a loop),
    /// without writing: to check every path before the first write.
    pub fn check(&self, rel: &Path) -> Result<(), RootError> {
        self.resolve_existing(rel).map(drop)
    }

    /// Where `rel` really is in the root: every link in it followed (root-relative).
    pub fn real(&self, rel: &Path) -> Result<PathBuf, RootError> {
        self.resolve_existing(rel)
    }

    /// The directory `rel` is in, resolved, and the name in it.
    fn parent_and_name<'a>(&self, rel: &'a Path) -> Result<(PathBuf, &'a OsStr), RootError> {
        let name = rel.file_name().ok_or_else(|| RootError::Io {
            path: self.shown(rel),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        })?;
        let parent = self.resolve_existing(rel.parent().unwrap_or(Path::new("")))?;
        Ok((parent, name))
    }

    /// Does `rel` exist (links followed inside the root)?
    pub fn exists(&self, rel: &Path) -> bool {
        let Ok(r) = self.resolve(rel) else {
            return false;
        };
        let (Some(name), Some(parent)) = (r.path.file_name(), r.path.parent()) else {
            return true; // the root itself
        };
        self.dir(parent).is_ok_and(|d| {
            nix::sys::stat::fstatat(&d, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
        })
    }

    /// The regular file `rel` (links followed inside the root), at most `limit` bytes,
    /// and its permission bits; None when it does not exist.
    pub fn read(&self, rel: &Path, limit: u64) -> Result<Option<(Vec<u8>, u32)>, RootError> {
        let r = self.resolve(rel)?;
        if r.dangling.is_some() {
            return Ok(None);
        }
        let Some(name) = r.path.file_name() else {
            return Err(OpenError::NotRegular {
                path: self.shown(rel),
                what: "a directory",
            }
            .into());
        };
        let dir = match self.dir(r.path.parent().unwrap_or(Path::new(""))) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(rel)(e)),
        };
        let shown = self.shown(rel);
        // An O_PATH descriptor first, to stat: a device is never opened (opening some
        // acts).
        let probe = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match nix::fcntl::openat(&dir, name, probe, Mode::empty()) {
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.io(rel)(errno(e))),
            Ok(fd) => {
                let t = File::from(fd)
                    .metadata()
                    .map_err(|e| self.io(rel)(e))?
                    .file_type();
                if let Some(what) = fsutil::special_kind(t) {
                    return Err(OpenError::NotRegular { path: shown, what }.into());
                }
            }
        }
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = match nix::fcntl::openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.io(rel)(errno(e))),
        };
        let f = File::from(fd);
        let mode = nix::sys::stat::fstat(f.as_fd())
            .map(|s| s.st_mode & 0o7777)
            .map_err(|e| self.io(rel)(errno(e)))?;
        let bytes = fsutil::read_opened(f, &shown, limit)?;
        Ok(Some((bytes, mode)))
    }

    /// The target of the link `rel` (the last component not followed); None when `rel`
    /// is missing or not a link.
    pub fn read_link(&self, rel: &Path) -> Result<Option<PathBuf>, RootError> {
        let r = self.resolve(rel.parent().unwrap_or(Path::new("")))?;
        let Some(name) = rel.file_name() else {
            return Ok(None);
        };
        if r.dangling.is_some() {
            return Ok(None);
        }
        let dir = match self.dir(&r.path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(rel)(e)),
        };
        match nix::fcntl::readlinkat(&dir, name) {
            Ok(t) => Ok(Some(PathBuf::from(t))),
            Err(Errno::ENOENT | Errno::EINVAL) => Ok(None),
            Err(e) => Err(self.io(rel)(errno(e))),
        }
    }

    /// `mkdir -p rel` inside the root; returns the directories it created, outermost
    /// first, as resolved root-relative paths (where they really are). On failure the
    /// ones it created are removed again.
    pub fn create_dir_all(&self, rel: &Path) -> Result<Vec<PathBuf>, RootError> {
        let real = self.resolve_existing(rel)?;
        let mut created = Vec::new();
        let r = self.create_dirs(&real, &mut created);
        if r.is_err() {
            for d in created.iter().rev() {
                let _ = self.remove_dir(d);
            }
        }
        r.map(|()| created)
    }

    fn create_dirs(&self, real: &Path, created: &mut Vec<PathBuf>) -> Result<(), RootError> {
        let mut cur = PathBuf::new();
        for c in components(real) {
            let parent = self.dir(&cur).map_err(|e| self.io(&cur)(e))?;
            cur.push(&c);
            match nix::sys::stat::mkdirat(&parent, c.as_os_str(), Mode::from_bits_truncate(0o755)) {
                Ok(()) => created.push(cur.clone()),
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(self.io(&cur)(errno(e))),
            }
        }
        self.dir(&cur).map(drop).map_err(|e| self.io(&cur)(e))
    }

    /// Write `bytes` to `rel` with permissions `mode`, through a temporary file in the
    /// same directory renamed over it (as [`fsutil::write_atomic`]). A link at `rel` is
    /// followed inside the root: its target is replaced, the link stays. The directory
    /// must exist.
    pub fn write_atomic(&self, rel: &Path, bytes: &[u8], mode: u32) -> Result<(), RootError> {
        let real = self.resolve_existing(rel)?;
        let (Some(name), Some(parent)) = (real.file_name(), real.parent()) else {
            return Err(self.io(rel)(io::Error::from_raw_os_error(libc::EISDIR)));
        };
        let dir = self.dir(parent).map_err(|e| self.io(parent)(e))?;
        let mut tmp_name = OsString::new();
        let mut fd = None;
        for n in 0..100u32 {
            let mut t = OsString::from(".");
            t.push(name);
            t.push(format!(".archctl-{}-{n}", std::process::id()));
            let flags = OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC;
            match nix::fcntl::openat(&dir, t.as_os_str(), flags, Mode::from_bits_truncate(0o600)) {
                Ok(f) => {
                    tmp_name = t;
                    fd = Some(f);
                    break;
                }
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(self.io(parent)(errno(e))),
            }
        }
        let Some(fd) = fd else {
            return Err(self.io(parent)(io::Error::from_raw_os_error(libc::EEXIST)));
        };
        let mut f = File::from(fd);
        let written = f
            .write_all(bytes)
            .and_then(|()| {
                nix::sys::stat::fchmod(f.as_fd(), Mode::from_bits_truncate(mode)).map_err(errno)
            })
            .and_then(|()| {
                nix::fcntl::renameat(&dir, tmp_name.as_os_str(), &dir, name).map_err(errno)
            });
        if let Err(e) = written {
            let _ = nix::unistd::unlinkat(
                &dir,
                tmp_name.as_os_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            return Err(self.io(rel)(e));
        }
        Ok(())
    }

    /// A symbolic link at `rel` to `target` (stored as given: it is read from the root
    /// when followed). The directory must exist.
    pub fn symlink(&self, target: &Path, rel: &Path) -> Result<(), RootError> {
        let (parent, name) = self.parent_and_name(rel)?;
        let dir = self.dir(&parent).map_err(|e| self.io(&parent)(e))?;
        nix::unistd::symlinkat(target, &dir, name).map_err(|e| self.io(rel)(errno(e)))
    }

    fn unlink(&self, rel: &Path, flag: nix::unistd::UnlinkatFlags) -> Result<bool, RootError> {
        let r = self.resolve(rel.parent().unwrap_or(Path::new("")))?;
        let Some(name) = rel.file_name() else {
            return Ok(false);
        };
        if r.dangling.is_some() {
            return Ok(false);
        }
        let dir = match self.dir(&r.path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.io(rel)(e)),
        };
        match nix::unistd::unlinkat(&dir, name, flag) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.io(rel)(errno(e))),
        }
    }

    /// Remove the file or link `rel` (a link itself, not its target); false when it
    /// was not there.
    pub fn remove_file(&self, rel: &Path) -> Result<bool, RootError> {
        self.unlink(rel, nix::unistd::UnlinkatFlags::NoRemoveDir)
    }

    /// Remove the empty directory `rel`; false when it was not there.
    pub fn remove_dir(&self, rel: &Path) -> Result<bool, RootError> {
        self.unlink(rel, nix::unistd::UnlinkatFlags::RemoveDir)
    }
}

/// Is `p` free of `..` and relative (a path a state file may name inside a root)?
pub fn is_plain_relative(p: &Path) -> bool {
    !p.as_os_str().is_empty()
        && !p.as_os_str().as_bytes().starts_with(b"/")
        && p.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::symlink;

    /// Both resolvers: openat2 (when the kernel has it) and the component walk.
    fn roots(p: &Path) -> Vec<Root> {
        let a = Root::open(p).unwrap();
        let mut b = Root::open(p).unwrap();
        b.openat2 = false;
        vec![a, b]
    }

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        (t, root, outside)
    }

    #[test]
    fn absolute_and_dotdot_links_stay_in_the_root() {
        for walk in [false, true] {
            let (_t, root, outside) = setup();
            let mut r = Root::open(&root).unwrap();
            if walk {
                r.openat2 = false;
            }
            symlink(&outside, root.join("etc/abs")).unwrap();
            symlink("../../../../../../outside", root.join("etc/rel")).unwrap();
            // Both point at a missing place inside the root: nothing is created.
            for l in ["etc/abs/x", "etc/rel/x"] {
                let e = r.create_dir_all(Path::new(l)).unwrap_err();
                assert!(matches!(e, RootError::Dangling { .. }), "{e}");
                let e = r.write_atomic(Path::new(l), b"x", 0o644).unwrap_err();
                assert!(matches!(e, RootError::Dangling { .. }), "{e}");
                assert_eq!(r.read(Path::new(l), 100).unwrap(), None);
            }
            // Once the target exists inside the root, writes land there.
            let inside = root.join(outside.strip_prefix("/").unwrap());
            std::fs::create_dir_all(&inside).unwrap();
            std::fs::create_dir_all(root.join("outside")).unwrap();
            r.write_atomic(Path::new("etc/abs/f"), b"a", 0o640).unwrap();
            r.write_atomic(Path::new("etc/rel/f"), b"b", 0o644).unwrap();
            assert_eq!(std::fs::read(inside.join("f")).unwrap(), b"a");
            assert_eq!(std::fs::read(root.join("outside/f")).unwrap(), b"b");
            assert_eq!(
                r.read(Path::new("etc/abs/f"), 10).unwrap(),
                Some((b"a".to_vec(), 0o640))
            );
            assert_eq!(
                std::fs::read_dir(&outside).unwrap().count(),
                0,
                "walk={walk}"
            );
        }
    }

    #[test]
    fn a_link_to_itself_is_a_loop_and_links_are_replaced_not_followed() {
        let (_t, root, outside) = setup();
        std::fs::remove_dir(root.join("etc")).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        // Only what reads here (this link names this machine's /etc); the writes below
        // go through a loop that could lead nowhere harmful.
        for r in roots(&root) {
            let e = r.check(Path::new("etc/systemd")).unwrap_err();
            assert!(matches!(e, RootError::Loop { .. }), "{e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("{}: too many levels", root.join("etc").display())),
                "{e}"
            );
            assert!(!r.exists(Path::new("etc/x")));
            assert!(r.read(Path::new("etc/os-release"), 1 << 20).is_err());
        }
        // `R/etc -> ../etc` is `R/etc` again too (`..` stops at the root); on this
        // machine it leads beside the root, into the temporary directory.
        std::fs::remove_file(root.join("etc")).unwrap();
        symlink("../etc", root.join("etc")).unwrap();
        for r in roots(&root) {
            let e = r.create_dir_all(Path::new("etc/systemd")).unwrap_err();
            assert!(matches!(e, RootError::Loop { .. }), "{e}");
            let e = r.write_atomic(Path::new("etc/f"), b"x", 0o644).unwrap_err();
            assert!(matches!(e, RootError::Loop { .. }), "{e}");
        }
        assert!(!root.parent().unwrap().join("etc").exists());
        std::fs::remove_file(root.join("etc")).unwrap();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(outside.join("f"), "host").unwrap();
        symlink(outside.join("f"), root.join("etc/l")).unwrap();
        for r in roots(&root) {
            assert_eq!(
                r.read_link(Path::new("etc/l")).unwrap(),
                Some(outside.join("f"))
            );
            assert!(!r.exists(Path::new("etc/l")));
            assert_eq!(r.read(Path::new("etc/l"), 100).unwrap(), None);
        }
        let r = Root::open(&root).unwrap();
        assert!(r.remove_file(Path::new("etc/l")).unwrap());
        assert_eq!(std::fs::read_to_string(outside.join("f")).unwrap(), "host");
        r.symlink(Path::new("/etc/f"), Path::new("etc/l")).unwrap();
        assert_eq!(
            std::fs::read_link(root.join("etc/l")).unwrap(),
            Path::new("/etc/f")
        );
    }

    #[test]
    fn mkdir_p_reports_what_it_created_where_it_is() {
        let (_t, root, _) = setup();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("/usr/lib", root.join("lib")).unwrap();
        for r in roots(&root) {
            let made = r.create_dir_all(Path::new("lib/a/b")).unwrap();
            assert_eq!(made, vec![PathBuf::from("usr/lib/a"), "usr/lib/a/b".into()]);
            assert!(root.join("usr/lib/a/b").is_dir());
            assert_eq!(
                r.create_dir_all(Path::new("lib/a/b")).unwrap(),
                Vec::<PathBuf>::new()
            );
            assert!(r.remove_dir(Path::new("usr/lib/a/b")).unwrap());
            assert!(r.remove_dir(Path::new("usr/lib/a")).unwrap());
            assert!(!r.remove_dir(Path::new("usr/lib/a")).unwrap());
        }
        // A file in the way is an error.
        std::fs::write(root.join("usr/f"), "").unwrap();
        for r in roots(&root) {
            let e = r.create_dir_all(Path::new("usr/f/x")).unwrap_err();
            assert!(e.to_string().contains("usr/f"), "{e}");
        }
    }

    #[test]
    fn reads_only_regular_files_and_never_blocks() {
        let (_t, root, _) = setup();
        nix::unistd::mkfifo(&root.join("etc/fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        for r in roots(&root) {
            let e = r.read(Path::new("etc/fifo"), 10).unwrap_err();
            assert!(
                e.to_string()
                    .ends_with("is a FIFO (named pipe), not a regular file"),
                "{e}"
            );
            let e = r.read(Path::new("etc"), 10).unwrap_err();
            assert!(e.to_string().contains("is a directory"), "{e}");
            assert_eq!(r.read(Path::new("etc/none"), 10).unwrap(), None);
        }
    }

    #[test]
    fn state_paths_are_plain_relative() {
        assert!(is_plain_relative(Path::new("etc/systemd")));
        for p in ["", "/etc", "../x", "etc/../x", "./etc"] {
            assert!(!is_plain_relative(Path::new(p)), "{p}");
        }
    }
}
