//! The command layer: one function per command, grouped by concept. Each takes its
//! options, plans through the modules below, applies, verifies, and returns a
//! [`Report`]; failures are [`CommandError`]s, which decide the exit code.
//!
//! - [`binfmt`] — enable, disable, status, test, boot, export
//! - [`containers`] — inspect, pick, run
//! - [`compose`] — compose-platforms
//! - [`doctor`] — the host's checks, or one file's
//! - [`exec`] — rootless exec in a private binfmt_misc instance
//! - [`setup`] — service, emulators, config
//! - [`ps`] — processes running under emulation
//! - [`package`] — shell completions and the manual page, from the clap definitions

pub mod binfmt;
pub mod compose;
pub mod containers;
pub mod doctor;
pub mod exec;
pub mod node_agent;
pub mod package;
pub mod ps;
pub mod setup;
pub mod webhook;

use std::path::PathBuf;

use crate::{
    arch::{self, Rule, Table},
    binfmt::{BinfmtFs, KernelBinfmt},
    bundle, config, engine,
    host::{self, Host, Native},
    ns, plan, platform, registry,
    report::Report,
    service,
};

/// What the binfmt_misc commands work with.
pub struct Context {
    pub table: &'static Table,
    pub host: Host,
    pub fs: Box<dyn BinfmtFs>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("host", &self.host)
            .field("binfmt_dir", &self.fs.dir())
            .finish()
    }
}

impl Context {
    pub fn new(binfmt_dir: PathBuf) -> Context {
        let table = Table::builtin();
        Context {
            table,
            host: Host::detect(table),
            fs: Box::new(KernelBinfmt::new(binfmt_dir)),
        }
    }

    /// Probe native architectures only when a rule of the host's family is involved.
    fn native_for(&self, rules: &[&Rule]) -> Native {
        let family = self.host.family.as_deref();
        if rules
            .iter()
            .any(|r| !self.host.is_host(r) && Some(r.family.as_str()) == family)
        {
            self.native_all()
        } else {
            Native::host_only(&self.host)
        }
    }

    pub fn native_all(&self) -> Native {
        host::detect_native(self.table, &self.host, self.fs.as_ref())
    }

    /// The entries, or none when binfmt_misc is not mounted.
    fn entries_if_mounted(&self) -> Result<Vec<crate::binfmt::Entry>, CommandError> {
        Ok(if self.fs.is_mounted()? {
            self.fs.entries()?
        } else {
            Vec::new()
        })
    }
}

/// Run a future to completion on a single-threaded runtime (the registry client's).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, CommandError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| registry::RegistryError::Client(e.to_string()))?;
    Ok(runtime.block_on(f))
}

/// Every way a command can fail. Module errors keep their types; the edge decides what
/// each means for the user: [`CommandError::exit_code`] is the one place exit codes
/// are chosen.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Arch(#[from] arch::ArchError),
    #[error(transparent)]
    Binfmt(#[from] crate::binfmt::BinfmtError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    #[error(transparent)]
    Service(#[from] service::ServiceError),
    #[error(transparent)]
    Emulator(#[from] crate::emulator::EmulatorError),
    #[error(transparent)]
    Namespace(#[from] ns::NsError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Apply(#[from] plan::ApplyError),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error(transparent)]
    Platform(#[from] platform::PlatformError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error(transparent)]
    Ps(#[from] crate::ps::PsError),
    #[error(transparent)]
    Kube(#[from] crate::kubernetes::KubeError),
    /// Bad input the parser could not catch (exit 2).
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
    #[error("cannot tell where this archctl binary is: {0}")]
    CurrentExe(#[source] std::io::Error),
    /// The command ran and failed; the report says what happened.
    #[error("{}", .0.failure_summary())]
    Failed(Box<Report>),
}

impl CommandError {
    /// 2 for bad command-line input, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        use crate::{binfmt::BinfmtError, bundle::BundleError, service::ServiceError};
        let usage = match self {
            CommandError::Arch(arch::ArchError::Unknown { .. }) | CommandError::Usage(_) => true,
            CommandError::Service(ServiceError::UnknownInit(_) | ServiceError::BadPath { .. }) => {
                true
            }
            CommandError::Bundle(BundleError::BadSha(_)) => true,
            CommandError::Binfmt(BinfmtError::BadFlags(_)) => true,
            CommandError::Plan(e) => e.is_usage(),
            // A platform the user wrote badly; a host archctl has no name for is not
            // the user's mistake.
            CommandError::Platform(e) => matches!(e, platform::PlatformError::Invalid(_)),
            // Engine command lines the user wrote; a missing engine is the machine's state.
            CommandError::Engine(e) => !matches!(e, engine::EngineError::NotFound),
            _ => false,
        };
        if usage { 2 } else { 1 }
    }

    /// The fixes to suggest (the error's own, then those of a failed report's parts).
    pub fn hints(&self) -> Vec<String> {
        let own = match self {
            CommandError::Binfmt(e) => e.hint(),
            CommandError::Config(e) => e.hint(),
            CommandError::Bundle(e) => e.hint(),
            CommandError::Service(e) => e.hint(),
            CommandError::Emulator(e) => e.hint(),
            CommandError::Namespace(e) => e.hint(),
            CommandError::Plan(e) => e.hint(),
            CommandError::Apply(e) => e.source.hint(),
            CommandError::Registry(e) => e.hint(),
            CommandError::Engine(e) => e.hint(),
            CommandError::Kube(e) => e.hint(),
            CommandError::CurrentExe(_) => Some("name it with --binary PATH".into()),
            _ => None,
        };
        let mut v: Vec<String> = own.into_iter().collect();
        if let Some(r) = self.report() {
            v.extend(r.hints());
        }
        v
    }

    /// The report of a command that ran and failed.
    pub fn report(&self) -> Option<&Report> {
        match self {
            CommandError::Failed(r) => Some(r),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_meaning() {
        let code = |e: CommandError| e.exit_code();
        // The machine's state, not the user's words: failures.
        assert_eq!(code(engine::EngineError::NotFound.into()), 1);
        assert_eq!(
            code(platform::PlatformError::UnknownHost("xtensa".into()).into()),
            1
        );
        assert_eq!(code(CommandError::Refused("needs root".into())), 1);
        // What the user wrote: usage errors.
        assert_eq!(code(engine::EngineError::Unknown("rkt".into()).into()), 2);
        assert_eq!(code(engine::EngineError::NoImage.into()), 2);
        assert_eq!(
            code(platform::PlatformError::Invalid("linux".into()).into()),
            2
        );
        assert_eq!(code(CommandError::Usage("bad".into())), 2);
        assert!(
            CommandError::from(engine::EngineError::NotFound)
                .hints()
                .iter()
                .any(|h| h.contains("--engine"))
        );
    }
}
