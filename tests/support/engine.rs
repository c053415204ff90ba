//! Engine test support: the host's binfmt_misc table recorded and restored around a
//! test ([`BinfmtGuard`]), a private dockerd ([`Dockerd`]) and podman on its own storage
//! ([`Podman`]). Host-wide registration must be serialised: each test binary that uses
//! these holds its own lock, and cargo runs test binaries one at a time.

use super::{ARCHCTL, RegistryIsolated, RunExt, assert_code, stdout};

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// Why engine tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (host-wide binfmt_misc and dockerd need it)".into());
    }
    if Command::new("dockerd").arg("--version").output().is_err() {
        return Some("dockerd (Debian package docker.io) not installed".into());
    }
    None
}

#[macro_export]
macro_rules! require_engine {
    () => {
        let unavailable = support::engine::unavailable();
        skip_unless!(unavailable.is_none(), "{}", unavailable.unwrap_or_default());
    };
}

/// The host's binfmt_misc entries, and whether it was mounted, when a test began; on
/// drop, removes every entry added since (and unmounts it if the test mounted it).
pub struct BinfmtGuard {
    before: Vec<String>,
    was_mounted: bool,
    /// Entries of the host's taken out for the test, put back as they were on drop.
    set_aside: Vec<archctl::binfmt::Entry>,
}

pub fn host_entries() -> Vec<String> {
    std::fs::read_dir(BINFMT)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "register" && n != "status")
                .collect()
        })
        .unwrap_or_default()
}

impl BinfmtGuard {
    /// Mounts binfmt_misc when it is not (so entries made from inside a container are
    /// visible, and removed, here).
    pub fn new() -> BinfmtGuard {
        let was_mounted = Path::new(BINFMT).join("register").exists();
        if !was_mounted {
            nix::mount::mount(
                Some("binfmt_misc"),
                BINFMT,
                Some("binfmt_misc"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .expect("mount binfmt_misc");
        }
        BinfmtGuard {
            before: host_entries(),
            was_mounted,
            set_aside: Vec::new(),
        }
    }

    /// Take every host entry that handles `q` out of the table for the test (another
    /// tool's, Debian's, or the README's first command's), to be put back on drop.
    pub fn set_aside(&mut self, q: &str) {
        use archctl::binfmt::{BinfmtFs, KernelBinfmt};
        let fs = KernelBinfmt::new(BINFMT);
        let entries = fs.entries().unwrap();
        let taken: Vec<archctl::binfmt::Entry> =
            holders(&entries, q).into_iter().cloned().collect();
        for e in taken {
            fs.remove(&e.name).unwrap();
            self.before.retain(|b| *b != e.name);
            self.set_aside.push(e);
        }
    }
}

/// The entries that handle `q`'s programs: named `qemu-q`, or catching them by magic.
pub fn holders<'a>(
    entries: &'a [archctl::binfmt::Entry],
    q: &str,
) -> Vec<&'a archctl::binfmt::Entry> {
    let rule = archctl::arch::Table::builtin().get(q).unwrap();
    let name = format!("qemu-{q}");
    entries
        .iter()
        .filter(|e| {
            e.name == name || archctl::binfmt::handlers_for(entries, rule).any(|h| h.name == e.name)
        })
        .collect()
}

/// Can `e` be registered again exactly as it is (magic entry, interpreter visible)?
pub fn restorable(e: &archctl::binfmt::Entry) -> bool {
    e.to_registration().is_some() && Path::new(&e.interpreter).exists()
}

impl Drop for BinfmtGuard {
    fn drop(&mut self) {
        for e in host_entries() {
            if !self.before.contains(&e) {
                let _ = std::fs::write(Path::new(BINFMT).join(&e), "-1");
            }
        }
        use archctl::binfmt::{BinfmtFs, KernelBinfmt};
        let fs = KernelBinfmt::new(BINFMT);
        for e in &self.set_aside {
            if let Some(reg) = e.to_registration() {
                let restored = fs.register(&reg).and_then(|()| {
                    if e.enabled {
                        Ok(())
                    } else {
                        fs.set_enabled(&e.name, false)
                    }
                });
                if let Err(err) = restored {
                    eprintln!("BinfmtGuard: could not put back {}: {err}", e.name);
                }
            }
        }
        if !self.was_mounted {
            let _ = nix::mount::umount(BINFMT);
        }
    }
}

/// A private dockerd: own data root, exec root and socket in a temp dir, no networking.
pub struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        let dir = tempfile::tempdir().unwrap();
        let d = |n: &str| dir.path().join(n);
        let log = std::fs::File::create(d("log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d("data"))
            .arg("--exec-root")
            .arg(d("exec"))
            .arg("--pidfile")
            .arg(d("pid"))
            .arg("-H")
            .arg(format!("unix://{}", d("sock").display()))
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--ip-forward=false",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd");
        let me = Dockerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new("docker")
                .arg("version")
                .env("DOCKER_HOST", me.host())
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        me
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("sock").display())
    }

    /// `docker ARGS...` against this daemon.
    pub fn cli(&self, args: &[&str]) -> super::Run {
        use super::RunExt;
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.host())
            .run()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Podman with its own storage (never the user's), and archctl using it.
pub struct Podman {
    tmp: tempfile::TempDir,
}

/// Podman's default NOFILE/NPROC limits exceed what this VM allows.
pub const PODMAN_ULIMITS: [&str; 2] = ["--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024"];

impl Podman {
    pub fn new() -> Podman {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
                tmp.path().display()
            ),
        )
        .unwrap();
        std::fs::write(tmp.path().join("auth.json"), "{}").unwrap();
        Podman { tmp }
    }

    pub fn env(&self, c: &mut Command) {
        c.env(
            "CONTAINERS_STORAGE_CONF",
            self.tmp.path().join("storage.conf"),
        )
        .registry_isolated(self.tmp.path().join("cache"), self.tmp.path())
        .env("REGISTRY_AUTH_FILE", self.tmp.path().join("auth.json"))
        .env_remove("ARCHCTL_ENGINE");
    }

    /// `podman ARGS` on this storage.
    pub fn podman(&self, args: &[&str]) -> super::Run {
        let mut c = Command::new("podman");
        c.args(args);
        self.env(&mut c);
        c.run()
    }

    /// `archctl ARGS` with this podman's storage.
    pub fn archctl(&self, args: &[&str]) -> super::Run {
        let mut c = Command::new(ARCHCTL);
        c.args(args);
        self.env(&mut c);
        c.run()
    }

    /// `archctl run --engine podman --rm --network none ULIMITS EXTRA... IMAGE`.
    pub fn run(&self, extra: &[&str], image: &str) -> super::Run {
        let mut a = vec!["run", "--engine", "podman", "--rm", "--network", "none"];
        a.extend(PODMAN_ULIMITS);
        a.extend_from_slice(extra);
        a.push(image);
        self.archctl(&a)
    }

    /// The architecture of the image podman has under `image`.
    pub fn cached_arch(&self, image: &str) -> String {
        let out = self.podman(&["image", "inspect", "--format", "{{.Architecture}}", image]);
        assert_code(&out, 0);
        stdout(&out).trim().to_string()
    }
}

pub fn podman_available() -> bool {
    Command::new("podman").arg("--version").output().is_ok()
}
