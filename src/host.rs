//! The host: what machine this is, and which architectures it runs natively. Native is
//! decided by executing the embedded test programs where no binfmt_misc handler can catch
//! them, never by assuming (an arm64 CPU may or may not run 32-bit arm).

use serde::Serialize;

use crate::{
    arch::{Rule, Table, representative_header},
    binfmt::BinfmtFs,
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

/// How the native set was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NativeMethod {
    /// Nothing to probe: only the host's own architecture is in its family.
    HostOnly,
    /// Executed in a private user namespace with an empty binfmt_misc instance.
    PrivateInstance,
    /// Executed directly; no registered handler matched the programs (old kernel).
    DirectExec,
}

/// The architectures this host runs without emulation.
#[derive(Debug, Clone, Serialize)]
pub struct Native {
    pub arches: Vec<String>,
    pub method: NativeMethod,
    /// Candidates that could not be decided (old kernel and a handler claims them).
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
            method: NativeMethod::HostOnly,
            undecided: Vec::new(),
        }
    }
}

/// Establish the native set: the host's architecture plus every same-family target whose
/// test program really executes without a handler.
pub fn detect_native(table: &Table, host: &Host, fs: &dyn BinfmtFs) -> Native {
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
    let refs: Vec<&ExecImage> = images.iter().collect();
    match ns::probe_native(&refs) {
        Ok(results) => {
            native.method = NativeMethod::PrivateInstance;
            for ((r, _), ok) in candidates.iter().zip(results) {
                if ok {
                    native.arches.push(r.name.clone());
                }
            }
        }
        Err(_) => {
            // Old kernel: a direct exec is only conclusive when no handler could catch it.
            native.method = NativeMethod::DirectExec;
            let entries = fs.entries().unwrap_or_default();
            for ((r, _), img) in candidates.iter().zip(&images) {
                let header = representative_header(r);
                let caught = entries
                    .iter()
                    .any(|e| e.enabled && e.matcher.matches(&header));
                if caught {
                    native.undecided.push(r.name.clone());
                } else if ns::run_plain(img) {
                    native.arches.push(r.name.clone());
                }
            }
        }
    }
    native
}
