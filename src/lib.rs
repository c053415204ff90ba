//! archctl: make foreign-architecture binaries and containers run on Linux, through
//! qemu-user-static registered in binfmt_misc.
//!
//! Modules own one concept each: [`arch`] (the rule table), [`binfmt`] (the kernel
//! interface), [`elf`] (ELF checks), [`emulator`] (finding emulators), [`host`] (host and
//! native architectures), [`ns`] (private namespaces and executable images), [`plan`]
//! (what enable/disable change, apply, rollback), [`verify`] (proof by execution),
//! [`testprog`] (the embedded test programs) and [`ops`] (the commands).

pub mod arch;
pub mod binfmt;
pub mod bundle;
pub mod config;
pub mod elf;
pub mod emulator;
pub mod engine;
pub mod fsutil;
pub mod host;
pub mod interrupt;
pub mod ns;
pub mod ops;
pub mod plan;
pub mod platform;
pub mod registry;
pub mod report;
pub mod rules_data;
pub mod service;
pub mod testprog;
pub mod verify;

/// Every error the library returns; each knows its hint and whether it is a usage error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Arch(#[from] arch::ArchError),
    #[error(transparent)]
    Binfmt(#[from] binfmt::BinfmtError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    #[error(transparent)]
    Service(#[from] service::ServiceError),
    #[error(transparent)]
    Emulator(#[from] emulator::EmulatorError),
    #[error(transparent)]
    Namespace(#[from] ns::NsError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Apply(#[from] plan::ApplyError),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error("{0}")]
    Usage(String),
    /// The command cannot go on as things are (exit 1), e.g. emulation needs root.
    #[error("{0}")]
    Refused(String),
    #[error("cannot run {program}: {source}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The command ran and failed; the report says what happened.
    #[error("{}", failure_summary(.0))]
    Failed(Box<ops::Report>),
}

fn failure_summary(r: &ops::Report) -> String {
    match r {
        ops::Report::Change(c) => c.error.clone().unwrap_or_else(|| "failed".into()),
        ops::Report::Inspect(r) => {
            let failed: Vec<String> = r.images.iter().filter_map(|i| i.error.clone()).collect();
            failed.join("; ")
        }
        ops::Report::Compose(r) => r
            .services
            .iter()
            .filter_map(|s| {
                s.error
                    .as_ref()
                    .map(|e| format!("service {}: {e}", s.service))
            })
            .collect::<Vec<_>>()
            .join("; "),
        ops::Report::Pick(c) => c
            .error
            .clone()
            .unwrap_or_else(|| "no usable platform".into()),
        ops::Report::Test(t) => {
            let failed: Vec<String> = t
                .results
                .iter()
                .filter(|r| !r.ok)
                .map(|r| format!("{}: {}", r.arch, r.error.as_deref().unwrap_or("failed")))
                .collect();
            format!("test failed: {}", failed.join("; "))
        }
    }
}

impl Error {
    /// The fix to suggest, if there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Arch(_) => None,
            Error::Binfmt(e) => e.hint(),
            Error::Config(e) => e.hint(),
            Error::Bundle(e) => e.hint(),
            Error::Service(e) => e.hint(),
            Error::Emulator(e) => e.hint(),
            Error::Namespace(e) => e.hint(),
            Error::Plan(e) => e.hint(),
            Error::Apply(e) => e.source.hint(),
            Error::Registry(e) => e.hint(),
            Error::Usage(_) => None,
            Error::Exec { .. } | Error::Failed(_) | Error::Refused(_) => None,
        }
    }

    /// Bad command-line input (exit code 2) rather than a failure (exit code 1).
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Arch(arch::ArchError::Unknown { .. }) | Error::Usage(_) => true,
            Error::Service(service::ServiceError::UnknownInit(_)) => true,
            Error::Bundle(bundle::BundleError::BadSha(_)) => true,
            Error::Binfmt(binfmt::BinfmtError::BadFlags(_)) => true,
            Error::Plan(e) => e.is_usage(),
            _ => false,
        }
    }

    /// Hints of the parts of a report that failed (one per distinct hint).
    pub fn report_hints(&self) -> Vec<String> {
        let mut v: Vec<String> = match self.report() {
            Some(ops::Report::Inspect(r)) => {
                r.images.iter().filter_map(|i| i.hint.clone()).collect()
            }
            _ => Vec::new(),
        };
        v.dedup();
        v
    }

    /// The report of a command that ran and failed.
    pub fn report(&self) -> Option<&ops::Report> {
        match self {
            Error::Failed(r) => Some(r),
            _ => None,
        }
    }
}
