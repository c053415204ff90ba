//! `archctl exec`: rootless emulation. The architectures are registered in a private
//! binfmt_misc instance of a new user + mount namespace, and the command runs there as
//! the user who started archctl; the host's table is never touched.

use std::{ffi::OsString, os::unix::process::CommandExt, path::Path};

use super::{CommandError, Context};
use crate::{
    binfmt::{BinfmtError, BinfmtFs, DEFAULT_DIR, Flags, KernelBinfmt},
    emulator::Search,
    ns, plan,
};

/// Register `archs` in a private instance and replace this process with `command`.
/// Returns only on error. `ctx` is the host's view (its binfmt_misc directory, for
/// deciding which architectures run natively).
pub fn exec(
    ctx: &Context,
    archs: &[String],
    search: &Search,
    flags: Flags,
    command: &[OsString],
) -> CommandError {
    match exec_inner(ctx, archs, search, flags, command) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn exec_inner(
    ctx: &Context,
    archs: &[String],
    search: &Search,
    flags: Flags,
    command: &[OsString],
) -> Result<std::convert::Infallible, CommandError> {
    let rules = ctx.table.lookup_all(archs)?;
    if search.explicit.is_some() && rules.len() > 1 {
        return Err(plan::PlanError::EmulatorForMany(rules.len()).into());
    }
    let Some((program, args)) = command.split_first() else {
        return Err(CommandError::Usage(
            "no command: write it after `--`, e.g. `archctl exec --arch aarch64 -- ./prog`".into(),
        ));
    };
    // Everything that can fail on bad input is checked before entering the namespace.
    let native = ctx.native_for(&rules);
    let mut regs = Vec::new();
    for r in &rules {
        if ctx.host.is_host(r) || native.contains(&r.name) {
            continue;
        }
        let reg = search
            .registration(r, ctx.table, &native, flags)
            .map_err(|source| plan::PlanError::Emulator {
                arch: r.name.clone(),
                source,
            })?;
        regs.push(reg);
    }
    let dir = ctx.fs.dir();
    if !dir.is_dir() {
        if dir == Path::new(DEFAULT_DIR) {
            return Err(BinfmtError::Unavailable {
                path: dir.to_path_buf(),
            }
            .into());
        }
        return Err(CommandError::Usage(format!(
            "--binfmt-dir {}: not a directory (exec mounts its private binfmt_misc instance there)",
            dir.display()
        )));
    }
    let inst = ns::enter_private_binfmt(dir)?;
    let fs = KernelBinfmt::new(&inst.dir);
    for reg in &regs {
        fs.register(reg)?;
    }
    inst.drop_to_original_ids()?;
    Err(replace_process(program, args))
}

/// Replace this process with `program args...`; returns only the error.
pub(super) fn replace_process(program: &OsString, args: &[OsString]) -> CommandError {
    let err = std::process::Command::new(program).args(args).exec();
    CommandError::Exec {
        program: program.to_string_lossy().into_owned(),
        source: err,
    }
}
