//! Setting a machine up: the boot service, emulator bundles, the configuration file.

use std::{path::Path, time::Duration};

use super::{CommandError, Context};
use crate::{
    bundle::{self, EmulatorInfo, InstallReport, PackReport},
    config::{self, Config},
    emulator::Search,
    report::{ConfigWritten, Generated, ServiceOutcome, ServiceVerb},
    service,
};

/// `archctl service install|uninstall|status`. `config` is the global `--config`: the
/// boot command carries it (the configuration the service applies at boot).
pub fn service(
    verb: ServiceVerb,
    init: &str,
    root: &Path,
    binary: Option<&Path>,
    config: Option<&Path>,
) -> Result<ServiceOutcome, CommandError> {
    let root = crate::rootfs::Root::open(root).map_err(service::ServiceError::from)?;
    let init = service::Init::parse(init, &root)?;
    let binary = match binary {
        Some(b) => b.to_path_buf(),
        None => std::env::current_exe().map_err(CommandError::CurrentExe)?,
    };
    let report = match verb {
        ServiceVerb::Install => {
            let cmd = service::BootCommand::new(&binary, config, &root)?;
            service::install(init, &root, &cmd)?
        }
        ServiceVerb::Uninstall => service::uninstall(init, &root)?,
        ServiceVerb::Status => {
            let cmd = service::BootCommand::new(&binary, config, &root)?;
            service::status(init, &root, &cmd)
        }
    };
    Ok(ServiceOutcome { verb, report })
}

/// `archctl service unit`: the systemd unit `service install` writes, running `binary`
/// (default: this one) with the global `--config` when given, for packages that ship it (the .deb's
/// /usr/lib/systemd/system/archctl.service).
pub fn service_unit(
    binary: Option<&Path>,
    config: Option<&Path>,
) -> Result<Generated, CommandError> {
    let binary = match binary {
        Some(b) => b.to_path_buf(),
        None => std::env::current_exe().map_err(CommandError::CurrentExe)?,
    };
    let host = crate::rootfs::Root::open(Path::new("/")).map_err(service::ServiceError::from)?;
    let cmd = service::BootCommand::new(&binary, config, &host)?;
    Ok(Generated {
        kind: "unit",
        name: "archctl.service".into(),
        text: service::systemd_unit(&cmd),
    })
}

fn search_in(dir: Option<&Path>) -> Search {
    Search {
        dir: dir.map(Path::to_path_buf),
        ..Default::default()
    }
}

/// `archctl emulators list`.
pub fn emulators_list(ctx: &Context, emulator_dir: Option<&Path>) -> Vec<EmulatorInfo> {
    bundle::list(ctx.table, &ctx.native_all(), &search_in(emulator_dir))
}

/// `archctl emulators pack`: every installed static emulator, or those of `archs`.
pub fn emulators_pack(
    ctx: &Context,
    archs: &[String],
    output: &Path,
    emulator_dir: Option<&Path>,
) -> Result<PackReport, CommandError> {
    let rules = if archs.is_empty() {
        ctx.table.rules().iter().collect()
    } else {
        ctx.table.lookup_all(archs)?
    };
    let native = ctx.native_all();
    Ok(bundle::pack(
        ctx.table,
        &native,
        &search_in(emulator_dir),
        &rules,
        output,
    )?)
}

/// `archctl emulators install`.
pub fn emulators_install(
    ctx: &Context,
    archs: &[String],
    from: &str,
    sha256: &str,
    dest: &Path,
    timeout: Duration,
) -> Result<InstallReport, CommandError> {
    let rules = ctx.table.lookup_all(archs)?;
    let native = ctx.native_all();
    Ok(bundle::install(
        ctx.table, &native, from, sha256, dest, &rules, timeout,
    )?)
}

/// `archctl config init`: the commented default, atomically, never over an existing
/// file unless `force`.
pub fn config_init(path: &Path, force: bool) -> Result<ConfigWritten, CommandError> {
    config::write_default(path, force)?;
    Ok(ConfigWritten {
        wrote: path.display().to_string(),
    })
}

/// `archctl config show`: the effective configuration.
pub fn config_show(path: &Path) -> Result<Config, CommandError> {
    let (c, _) = Config::load(path, crate::arch::Table::builtin())?;
    Ok(c)
}
