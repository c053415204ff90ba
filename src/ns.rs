//! User + mount namespaces with a private binfmt_misc instance (Linux 6.7+), and
//! executable in-memory images of the embedded test programs.
//!
//! Two users: [`probe_native`] forks a child that gets an empty binfmt_misc instance and
//! tries to execute programs natively (so no handler can catch them), and
//! [`enter_private_binfmt`] moves the calling (single-threaded) process into such a
//! namespace for `archctl exec`.

use std::{
    ffi::{CStr, CString},
    fs::File,
    io::{self, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use crate::binfmt::DEFAULT_DIR;

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("cannot create a private binfmt_misc instance: {what} failed: {errno}")]
    Unsupported {
        what: &'static str,
        errno: nix::Error,
        kernel: String,
    },
    #[error("cannot prepare an executable image: {0}")]
    Image(#[source] io::Error),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
}

impl NsError {
    pub fn hint(&self) -> Option<String> {
        match self {
            NsError::Unsupported { kernel, .. } if !kernel_at_least(kernel, 6, 7) => Some(format!(
                "per-namespace binfmt_misc needs Linux 6.7 or newer (this kernel is {kernel}); use `sudo archctl enable ARCH` instead"
            )),
            NsError::Unsupported { .. } => Some(
                "user namespaces may be disabled (sysctl user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns); use `sudo archctl enable ARCH` instead"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// The running kernel's release string (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Is a release string like `6.18.44-foo` at least `major.minor`?
pub fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// An executable copy of an in-memory program: a sealed-off read-only memfd (or, where
/// memfds cannot be executed, a file in a private temporary directory).
///
/// The read-only descriptor stays open without close-on-exec, so the path
/// `/proc/self/fd/N` stays valid in the process that executes it, also for an
/// interpreter started by binfmt_misc without the `O` flag.
pub struct ExecImage {
    _fd: OwnedFd,
    path: CString,
    _dir: Option<tempfile::TempDir>,
}

impl ExecImage {
    /// Create all images before starting threads that spawn processes: the writable
    /// descriptor exists only inside this call (close-on-exec), so no child can hold it
    /// open and make another exec fail with ETXTBSY.
    pub fn new(name: &str, bytes: &[u8]) -> Result<ExecImage, NsError> {
        match Self::memfd(name, bytes) {
            Ok(img) => Ok(img),
            Err(_) => Self::tempfile(name, bytes),
        }
    }

    fn memfd(name: &str, bytes: &[u8]) -> Result<ExecImage, NsError> {
        let cname =
            CString::new(format!("archctl-{name}")).map_err(|e| NsError::Image(e.into()))?;
        // MFD_EXEC (Linux 6.3+) keeps the image executable under vm.memfd_noexec=1.
        const MFD_EXEC: libc::c_uint = 0x10;
        // SAFETY: valid C string, plain syscall.
        let mut raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | MFD_EXEC) };
        if raw < 0 {
            // SAFETY: as above.
            raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        }
        if raw < 0 {
            return Err(NsError::Image(io::Error::last_os_error()));
        }
        // SAFETY: memfd_create returned a new descriptor that we own.
        let mut rw = unsafe { File::from_raw_fd(raw) };
        rw.write_all(bytes).map_err(NsError::Image)?;
        let ro = Self::reopen_readonly(&format!("/proc/self/fd/{raw}"))?;
        drop(rw);
        Self::from_fd(ro, None)
    }

    fn tempfile(name: &str, bytes: &[u8]) -> Result<ExecImage, NsError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("archctl-")
            .tempdir()
            .map_err(NsError::Image)?;
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).map_err(NsError::Image)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .map_err(NsError::Image)?;
        let ro = Self::reopen_readonly(&p.to_string_lossy())?;
        Self::from_fd(ro, Some(dir))
    }

    fn reopen_readonly(path: &str) -> Result<OwnedFd, NsError> {
        let c = CString::new(path).map_err(|e| NsError::Image(e.into()))?;
        // SAFETY: valid C string; no O_CLOEXEC on purpose (see the type's docs).
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
        if fd < 0 {
            return Err(NsError::Image(io::Error::last_os_error()));
        }
        // SAFETY: open returned a new descriptor that we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn from_fd(fd: OwnedFd, dir: Option<tempfile::TempDir>) -> Result<ExecImage, NsError> {
        let path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| NsError::Image(e.into()))?;
        Ok(ExecImage {
            _fd: fd,
            path,
            _dir: dir,
        })
    }

    /// The path to execute (valid in this process and its children).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(self.path.to_string_lossy().into_owned())
    }
}

/// Everything the forked child needs, allocated before fork: after fork in a
/// multi-threaded parent only async-signal-safe calls are allowed (no allocation).
struct ChildPlan {
    setgroups: CString,
    uid_map_path: CString,
    gid_map_path: CString,
    uid_map: CString,
    gid_map: CString,
    root: CString,
    mountpoint: CString,
    fstype: CString,
    devnull: CString,
}

impl ChildPlan {
    fn new(mountpoint: &Path) -> Result<ChildPlan, NsError> {
        let c = |s: &str| CString::new(s).map_err(|e| NsError::Image(e.into()));
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid();
        Ok(ChildPlan {
            setgroups: c("/proc/self/setgroups")?,
            uid_map_path: c("/proc/self/uid_map")?,
            gid_map_path: c("/proc/self/gid_map")?,
            // Root inside the namespace: the private instance's files belong to its root.
            uid_map: c(&format!("0 {uid} 1"))?,
            gid_map: c(&format!("0 {gid} 1"))?,
            root: c("/")?,
            mountpoint: c(&mountpoint.to_string_lossy())?,
            fstype: c("binfmt_misc")?,
            devnull: c("/dev/null")?,
        })
    }
}

/// A step of namespace setup; the forked child reports the one that failed to the
/// parent as one byte.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Unshare = 1,
    UidMap = 2,
    GidMap = 3,
    Mount = 4,
}

impl Step {
    /// What failed, for [`NsError::Unsupported`].
    fn what(self) -> &'static str {
        match self {
            Step::Unshare => "unshare(CLONE_NEWUSER|CLONE_NEWNS)",
            Step::UidMap => "writing uid_map",
            Step::GidMap => "writing gid_map",
            Step::Mount => "mount -t binfmt_misc",
        }
    }
}

impl TryFrom<u8> for Step {
    type Error = u8;

    fn try_from(b: u8) -> Result<Step, u8> {
        Ok(match b {
            1 => Step::Unshare,
            2 => Step::UidMap,
            3 => Step::GidMap,
            4 => Step::Mount,
            _ => return Err(b),
        })
    }
}

/// Step of namespace setup that failed, and errno.
type SetupFailure = (Step, nix::Error);

/// Write a whole small buffer to a path (async-signal-safe).
unsafe fn write_path(path: &CStr, data: &CStr) -> bool {
    // SAFETY: valid C strings; raw syscalls only.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let bytes = data.to_bytes();
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        n == bytes.len() as isize
    }
}

/// Unshare user + mount namespaces, map the caller's ids, and mount a fresh binfmt_misc
/// instance at the plan's mount point. Async-signal-safe: callable after fork (nix's
/// `unshare` and `mount` with `&CStr` arguments are the bare syscalls, they allocate
/// nothing; `Errno::last` reads errno).
unsafe fn setup_private_binfmt(p: &ChildPlan) -> Result<(), SetupFailure> {
    use nix::{mount::MsFlags, sched::CloneFlags};
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
        .map_err(|e| (Step::Unshare, e))?;
    // SAFETY: valid C strings; raw syscalls only.
    unsafe {
        let _ = write_path(&p.setgroups, c"deny");
        if !write_path(&p.uid_map_path, &p.uid_map) {
            return Err((Step::UidMap, nix::Error::last()));
        }
        if !write_path(&p.gid_map_path, &p.gid_map) {
            return Err((Step::GidMap, nix::Error::last()));
        }
    }
    // Nothing done in here may propagate back to the host's mount table.
    let _ = nix::mount::mount(
        None::<&CStr>,
        p.root.as_c_str(),
        None::<&CStr>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&CStr>,
    );
    nix::mount::mount(
        Some(p.fstype.as_c_str()),
        p.mountpoint.as_c_str(),
        Some(p.fstype.as_c_str()),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&CStr>,
    )
    .map_err(|e| (Step::Mount, e))
}

/// Where a private instance is mounted: the usual place when the kernel has it.
fn private_mountpoint() -> PathBuf {
    PathBuf::from(DEFAULT_DIR)
}

/// Try to execute each image with no binfmt_misc handler able to catch it: in a forked
/// child with its own user namespace and an empty binfmt_misc instance. Returns, per
/// image, whether it ran and exited 0. Fails when the kernel cannot give the child a
/// private instance (Linux < 6.7, user namespaces disabled).
pub fn probe_native(images: &[&ExecImage]) -> Result<Vec<bool>, NsError> {
    let mountpoint = private_mountpoint();
    if !mountpoint.is_dir() {
        // No binfmt_misc in this kernel at all: nothing can intercept an exec.
        return Ok(run_plain_all(images));
    }
    let plan = ChildPlan::new(&mountpoint)?;
    let argvs: Vec<[*const libc::c_char; 2]> = images
        .iter()
        .map(|i| [i.path.as_ptr(), std::ptr::null()])
        .collect();
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let (rd, wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|source| NsError::Sys {
            what: "pipe",
            source,
        })?;
    // SAFETY: the child only makes async-signal-safe calls on data prepared above, then
    // _exits; the parent waits for it.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(NsError::Sys {
            what: "fork",
            source: nix::Error::last(),
        });
    }
    if pid == 0 {
        // SAFETY: child side, see above.
        unsafe {
            let out = wr.as_raw_fd();
            let report = |buf: &[u8]| {
                libc::write(out, buf.as_ptr().cast(), buf.len());
            };
            if let Err((step, e)) = setup_private_binfmt(&plan) {
                let eb = (e as i32).to_le_bytes();
                report(&[b'E', step as u8, eb[0], eb[1], eb[2], eb[3]]);
                libc::_exit(1);
            }
            for argv in &argvs {
                let child = libc::fork();
                if child == 0 {
                    let null = libc::open(plan.devnull.as_ptr(), libc::O_RDWR);
                    if null >= 0 {
                        libc::dup2(null, 0);
                        libc::dup2(null, 1);
                        libc::dup2(null, 2);
                    }
                    libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
                    libc::_exit(126);
                }
                let mut status = 0;
                let ok = child > 0
                    && libc::waitpid(child, &mut status, 0) == child
                    && libc::WIFEXITED(status)
                    && libc::WEXITSTATUS(status) == 0;
                report(if ok { b"1" } else { b"0" });
            }
            libc::_exit(0);
        }
    }
    drop(wr);
    let mut buf = Vec::new();
    let mut f = File::from(rd);
    let _ = io::Read::read_to_end(&mut f, &mut buf);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    if buf.first() == Some(&b'E') && buf.len() >= 6 {
        // An unknown byte cannot come from our child; it counted as the last step.
        let step = Step::try_from(buf[1]).unwrap_or(Step::Mount);
        let e = i32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]);
        return Err(NsError::Unsupported {
            what: step.what(),
            errno: nix::Error::from_raw(e),
            kernel: kernel_release(),
        });
    }
    if buf.len() != images.len() {
        return Err(NsError::Sys {
            what: "native probe child died",
            source: nix::Error::EIO,
        });
    }
    Ok(buf.iter().map(|&b| b == b'1').collect())
}

/// Execute images directly (no namespace), all at once; per image, true when it ran
/// and exited 0.
pub fn run_plain_all(images: &[&ExecImage]) -> Vec<bool> {
    use std::process::{Command, Stdio};
    let children: Vec<_> = images
        .iter()
        .map(|i| {
            Command::new(i.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.and_then(|mut c| c.wait()).is_ok_and(|s| s.success()))
        .collect()
}

/// Move this process into a new user + mount namespace with its own, empty binfmt_misc
/// instance mounted at `mountpoint` (inside the new mount namespace only), as root of
/// that namespace; returns the instance's directory. The process must be
/// single-threaded (the kernel refuses CLONE_NEWUSER otherwise). Call
/// [`drop_to_original_ids`] after registering.
pub fn enter_private_binfmt(mountpoint: &Path) -> Result<PrivateInstance, NsError> {
    let mountpoint = mountpoint.to_path_buf();
    let plan = ChildPlan::new(&mountpoint)?;
    let ids = (nix::unistd::getuid(), nix::unistd::getgid());
    // SAFETY: plain syscalls on data prepared above.
    unsafe { setup_private_binfmt(&plan) }.map_err(|(step, errno)| NsError::Unsupported {
        what: step.what(),
        errno,
        kernel: kernel_release(),
    })?;
    Ok(PrivateInstance {
        dir: mountpoint,
        uid: ids.0.as_raw(),
        gid: ids.1.as_raw(),
    })
}

/// A private binfmt_misc instance this process lives in.
pub struct PrivateInstance {
    pub dir: PathBuf,
    uid: u32,
    gid: u32,
}

impl PrivateInstance {
    /// Give the process back its own uid/gid (a nested user namespace that maps them to
    /// the root of the private one), so the command runs as the user who started it.
    /// The nested namespace still uses the private binfmt_misc instance (the kernel
    /// looks it up through the parent namespaces).
    pub fn drop_to_original_ids(&self) -> Result<(), NsError> {
        if self.uid == 0 && self.gid == 0 {
            return Ok(());
        }
        let c = |s: String| CString::new(s).map_err(|e| NsError::Image(e.into()));
        let (uid_map, gid_map) = (
            c(format!("{} 0 1", self.uid))?,
            c(format!("{} 0 1", self.gid))?,
        );
        let (sg, um, gm) = (
            c("/proc/self/setgroups".into())?,
            c("/proc/self/uid_map".into())?,
            c("/proc/self/gid_map".into())?,
        );
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map_err(|source| {
            NsError::Sys {
                what: "unshare(CLONE_NEWUSER)",
                source,
            }
        })?;
        // SAFETY: plain syscalls on prepared C strings.
        unsafe {
            let _ = write_path(&sg, c"deny");
            if !write_path(&um, &uid_map) || !write_path(&gm, &gid_map) {
                return Err(NsError::Sys {
                    what: "writing the nested uid_map/gid_map",
                    source: nix::Error::last(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_version_compare() {
        assert!(kernel_at_least("6.18.44-fc-v657", 6, 7));
        assert!(kernel_at_least("6.7.0", 6, 7));
        assert!(!kernel_at_least("6.6.30-lts", 6, 7));
        assert!(!kernel_at_least("5.15.0-91-generic", 6, 7));
        assert!(kernel_at_least("7.0", 6, 7));
        assert!(!kernel_at_least("", 6, 7));
    }

    #[test]
    fn old_kernels_get_a_clear_hint() {
        let e = NsError::Unsupported {
            what: "mount -t binfmt_misc",
            errno: nix::Error::EPERM,
            kernel: "6.1.0-18-amd64".into(),
        };
        let h = e.hint().unwrap();
        assert!(
            h.contains("Linux 6.7") && h.contains("6.1.0-18-amd64"),
            "{h}"
        );
        assert!(h.contains("sudo archctl enable"), "{h}");
        let e = NsError::Unsupported {
            what: "unshare(CLONE_NEWUSER|CLONE_NEWNS)",
            errno: nix::Error::EPERM,
            kernel: "6.8.0".into(),
        };
        assert!(
            e.hint()
                .unwrap()
                .contains("user namespaces may be disabled")
        );
    }

    #[test]
    fn setup_steps_round_trip_through_their_byte() {
        for step in [Step::Unshare, Step::UidMap, Step::GidMap, Step::Mount] {
            assert_eq!(Step::try_from(step as u8), Ok(step));
        }
        assert_eq!(Step::try_from(0), Err(0));
        assert_eq!(Step::try_from(5), Err(5));
    }

    #[test]
    fn exec_image_runs_host_program() {
        let host = crate::host::Host::detect(crate::arch::Table::builtin());
        let Some(prog) = host.arch.as_deref().and_then(crate::testprog::program) else {
            eprintln!("skipped: no test program for this host");
            return;
        };
        let img = ExecImage::new(prog.arch, prog.bytes).unwrap();
        let out = std::process::Command::new(img.path()).output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), prog.expected_output());
    }
}
