//! The host: what machine this is, and which architectures it runs natively. Native is
//! decided by executing the embedded test programs where no binfmt_misc handler can catch
//! them, never by assuming (an arm64 CPU may or may not run 32-bit arm).

use serde::Serialize;

use crate::{
    arch::{Rule, Table},
    binfmt::{BinfmtFs, handlers_for},
    ns::{self, ExecImage},
    testprog,
};

/// The machine archctl runs on.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// archctl's name for it (QEMU target), when known.
    pub arch: Option<String>,
    /// `uname -m`.
    pub machine: String,
    /// `uname -r`.
    pub kernel: String,
    #[serde(skip)]
    pub family: Option<String>,
}

impl Host {
    pub fn detect(table: &Table) -> Host {
        let machine = nix::sys::utsname::uname()
            .map(|u| u.machine().to_string_lossy().into_owned())
            .unwrap_or_else(|_| std::env::consts::ARCH.to_string());
        let rule = table.for_machine(&machine);
        Host {
            arch: rule.map(|r| r.name.clone()),
            family: rule.map(|r| r.family.clone()),
            machine,
            kernel: ns::kernel_release(),
        }
    }

    /// "x86_64" or the raw machine name when archctl has no rule for it.
    pub fn name(&self) -> &str {
        self.arch.as_deref().unwrap_or(&self.machine)
    }

    pub fn is_host(&self, rule: &Rule) -> bool {
        self.arch.as_deref() == Some(rule.name.as_str())
    }

    /// Rules that might run natively besides the host's own: same QEMU family.
    pub fn native_candidates<'t>(&self, table: &'t Table) -> Vec<&'t Rule> {
        table
            .rules()
            .iter()
            .filter(|r| !self.is_host(r) && self.family.as_deref() == Some(r.family.as_str()))
            .collect()
    }
}

/// The architectures this host runs without emulation.
#[derive(Debug, Clone, Serialize)]
pub struct Native {
    pub arches: Vec<String>,
    /// Candidates that could not be decided: a registered handler claims them and the
    /// kernel cannot give a probe a private binfmt_misc instance (Linux < 6.7).
    pub undecided: Vec<String>,
}

impl Native {
    pub fn contains(&self, arch: &str) -> bool {
        self.arches.iter().any(|a| a == arch)
    }

    /// Does this host run an ELF starting with `header` (host arch or a native one)?
    pub fn runs(&self, table: &Table, header: &[u8]) -> bool {
        self.arches
            .iter()
            .filter_map(|a| table.get(a))
            .any(|r| r.matches(header))
    }

    /// Only the host's own architecture (for hosts archctl cannot probe).
    pub fn host_only(host: &Host) -> Native {
        Native {
            arches: host.arch.iter().cloned().collect(),
            undecided: Vec::new(),
        }
    }
}

/// Establish the native set: the host's architecture plus every same-family target whose
/// test program really executes without a handler.
///
/// Where the binfmt_misc table is known (mounted at `fs`) and no enabled entry could
/// catch a candidate, executing it directly is conclusive and cheap (the usual case at
/// boot). Otherwise the candidate runs in a forked child with its own user namespace
/// and an empty binfmt_misc instance (Linux 6.7+).
pub fn detect_native(table: &Table, host: &Host, fs: &dyn BinfmtFs) -> Native {
    let cache = NativeCache::locate(host, table);
    if let Some(n) = cache.as_ref().and_then(NativeCache::load) {
        return n;
    }
    let native = probe(table, host, fs);
    if let Some(c) = &cache
        && native.undecided.is_empty()
    {
        c.store(&native);
    }
    native
}

/// The native set, remembered for the rest of the boot: what the CPU and kernel run does
/// not change until a reboot, and archctl asks on every `status`, `test` and `enable`.
/// Kept in `/run/archctl` (root) or `$XDG_RUNTIME_DIR/archctl`, both emptied at boot;
/// `ARCHCTL_RUNTIME_DIR` overrides the directory.
struct NativeCache {
    path: std::path::PathBuf,
    key: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedNative {
    key: String,
    native: Vec<String>,
}

impl NativeCache {
    fn locate(host: &Host, table: &Table) -> Option<NativeCache> {
        let dir = runtime_dir()?;
        let boot_id = boot_id()?;
        let candidates: Vec<&str> = host
            .native_candidates(table)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        Some(NativeCache {
            path: dir.join("native.json"),
            key: format!(
                "{} {} {} {} [{}]",
                boot_id,
                host.kernel,
                host.machine,
                env!("CARGO_PKG_VERSION"),
                candidates.join(",")
            ),
        })
    }

    fn load(&self) -> Option<Native> {
        let text = std::fs::read(&self.path).ok()?;
        let c: CachedNative = serde_json::from_slice(&text).ok()?;
        (c.key == self.key).then_some(Native {
            arches: c.native,
            undecided: Vec::new(),
        })
    }

    /// Best effort: a cache that cannot be written only costs the next run a probe.
    fn store(&self, native: &Native) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let data = CachedNative {
            key: self.key.clone(),
            native: native.arches.clone(),
        };
        let Ok(json) = serde_json::to_vec(&data) else {
            return;
        };
        if std::fs::create_dir_all(dir).is_ok() {
            // 0600: what the temporary file is created with.
            let _ = crate::fsutil::write_atomic(&self.path, &json, 0o600);
        }
    }
}

/// Where archctl keeps what holds until the next boot (the native set, emulators'
/// x86-64 levels): `/run/archctl` (root) or `$XDG_RUNTIME_DIR/archctl`, both emptied at
/// boot; `ARCHCTL_RUNTIME_DIR` overrides it.
pub fn runtime_dir() -> Option<std::path::PathBuf> {
    Some(match std::env::var_os("ARCHCTL_RUNTIME_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None if nix::unistd::geteuid().is_root() => std::path::PathBuf::from("/run/archctl"),
        None => std::path::PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?).join("archctl"),
    })
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), for keys of runtime caches.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Execute the candidates' test programs (see [`detect_native`]).
fn probe(table: &Table, host: &Host, fs: &dyn BinfmtFs) -> Native {
    let mut native = Native::host_only(host);
    let candidates: Vec<(&Rule, testprog::Program)> = host
        .native_candidates(table)
        .into_iter()
        .filter_map(|r| testprog::program(&r.name).map(|p| (r, p)))
        .collect();
    if candidates.is_empty() {
        return native;
    }
    let images: Vec<ExecImage> = match candidates
        .iter()
        .map(|(r, p)| ExecImage::new(&r.name, p.bytes))
        .collect()
    {
        Ok(v) => v,
        Err(_) => {
            native.undecided = candidates.iter().map(|(r, _)| r.name.clone()).collect();
            return native;
        }
    };
    // Which candidates could a registered handler catch? All of them when the table is
    // not visible here.
    let entries = match fs.is_mounted() {
        Ok(true) => fs.entries().ok(),
        _ => None,
    };
    let caught: Vec<bool> = candidates
        .iter()
        .map(|(r, _)| {
            entries
                .as_ref()
                .is_none_or(|es| handlers_for(es, r).next().is_some())
        })
        .collect();
    let direct: Vec<&ExecImage> = images
        .iter()
        .zip(&caught)
        .filter(|(_, c)| !**c)
        .map(|(i, _)| i)
        .collect();
    let mut direct_results = ns::run_plain_all(&direct).into_iter();
    let isolated: Vec<&ExecImage> = images
        .iter()
        .zip(&caught)
        .filter(|(_, c)| **c)
        .map(|(i, _)| i)
        .collect();
    let mut isolated_results = if isolated.is_empty() {
        Vec::new().into_iter()
    } else {
        match ns::probe_native(&isolated) {
            Ok(r) => r.into_iter(),
            Err(_) => {
                native.undecided = candidates
                    .iter()
                    .zip(&caught)
                    .filter(|(_, c)| **c)
                    .map(|((r, _), _)| r.name.clone())
                    .collect();
                vec![false; isolated.len()].into_iter()
            }
        }
    };
    for ((r, _), c) in candidates.iter().zip(&caught) {
        let ok = if *c {
            isolated_results.next()
        } else {
            direct_results.next()
        };
        if ok == Some(true) {
            native.arches.push(r.name.clone());
        }
    }
    native
}
