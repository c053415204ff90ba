//! The container commands: inspect (what a registry offers), pick (what runs here) and
//! run (the engine's `run` on the picked platform, emulation registered on demand).

use std::ffi::OsString;

use super::{CommandError, Context, binfmt, block_on};
use crate::{
    arch::Rule,
    binfmt::Flags,
    emulator::Search,
    engine::{Engine, command_line, parse_run_args},
    host::Native,
    plan::{EnableOptions, Selection},
    platform::{Choice, Emulation, HostPlatform, Mode, Platform, choose, qemu_target},
    registry::{
        self,
        inspect::{ImageReport, InspectReport, Inspector},
    },
    report::{PickReport, Report, RunPlan},
    verify,
};

/// `archctl inspect`: the platforms each image offers. Fails (with the report) when any
/// image failed; the others are still reported.
pub fn inspect(images: &[String], opts: registry::Options) -> Result<InspectReport, CommandError> {
    let inspector = Inspector::new(opts)?;
    let report = block_on(inspector.inspect_all(images))?;
    if report.images.iter().any(|i| i.error.is_some()) {
        return Err(CommandError::Failed(Box::new(Report::Inspect(report))));
    }
    Ok(report)
}

/// Options of `archctl pick`.
#[derive(Debug, Clone, Default)]
pub struct PickOptions {
    /// `--host-platform`: choose as for this platform instead of the real host.
    pub host_platform: Option<String>,
    /// `--no-aarch32`: the arm64 CPU cannot run 32-bit arm.
    pub no_aarch32: bool,
    /// `--no-emulation`.
    pub no_emulation: bool,
}

/// What this host can emulate right now: enabled, healthy handlers, and installed
/// emulators (for the targets that run the offered platforms), and which file would run
/// x86_64 programs (the registered interpreter first).
pub fn emulation_state(ctx: &Context, wanted: &[&Rule], native: &Native) -> Emulation {
    let mut e = Emulation::default();
    if let Ok(true) = ctx.fs.is_mounted()
        && let Ok(entries) = ctx.fs.entries()
    {
        for entry in entries.iter().filter(|x| x.enabled) {
            let st = super::binfmt::entry_status(ctx, native, entry);
            if st.interpreter_ok && st.arch != "unknown" {
                if st.arch == "x86_64" && e.x86_64_emulator.is_none() {
                    e.x86_64_emulator = Some(st.interpreter.clone());
                }
                e.registered.push(st.arch);
            }
        }
    }
    for r in wanted {
        if let Ok(found) = Search::default().find(r, ctx.table, native, true) {
            if r.name == "x86_64" && e.x86_64_emulator.is_none() {
                e.x86_64_emulator = Some(found.path.display().to_string());
            }
            e.installed.push(r.name.clone());
        }
    }
    e
}

/// The host platform a choice is made for: given, or this host's.
fn host_platform(ctx: &Context, opts: &PickOptions) -> Result<HostPlatform, CommandError> {
    match &opts.host_platform {
        Some(p) => Ok(HostPlatform::given(p, opts.no_aarch32)?),
        None => {
            let native = ctx.native_all();
            let mut h = HostPlatform::detect(ctx.table, ctx.host.arch.as_deref(), &native.arches)?;
            if opts.no_aarch32 {
                h.aarch32 = false;
            }
            Ok(h)
        }
    }
}

/// Inspect images (concurrently, one connection pool) and choose for each.
pub(super) fn choose_for(
    ctx: &Context,
    images: &[String],
    opts: &PickOptions,
    registry: registry::Options,
) -> Result<Vec<(ImageReport, Choice)>, CommandError> {
    let host = host_platform(ctx, opts)?;
    let inspector = Inspector::new(registry)?;
    let reports = block_on(inspector.inspect_all(images))?.images;
    let native = ctx.native_all();
    let wanted: Vec<&Rule> = reports
        .iter()
        .flat_map(|r| r.platforms.iter())
        .filter_map(|p| qemu_target(ctx.table, &Platform::from_entry(p)))
        .collect();
    let mut emu = emulation_state(ctx, &wanted, &native);
    emu.refused = opts.no_emulation;
    // Emulated amd64 runs the variants the x86_64 emulator provides: probe it, when
    // amd64 is offered and this host does not run x86_64 itself.
    let host_rule = qemu_target(ctx.table, &host.platform).map(|r| r.name.as_str());
    if !emu.refused && host_rule != Some("x86_64") && wanted.iter().any(|r| r.name == "x86_64") {
        emu.probe_x86_64();
    }
    Ok(reports
        .into_iter()
        .map(|r| {
            let c = choose(ctx.table, &r.reference, &host, &r.platforms, &emu);
            (r, c)
        })
        .collect())
}

/// `archctl pick`: the platform an image should run as on this host.
pub fn pick(
    ctx: &Context,
    image: &str,
    opts: &PickOptions,
    registry: registry::Options,
) -> Result<Choice, CommandError> {
    let mut v = choose_for(ctx, &[image.to_string()], opts, registry)?;
    let Some((report, choice)) = v.pop() else {
        return Err(CommandError::Usage("no image".into()));
    };
    if report.error.is_some() {
        return Err(CommandError::Failed(Box::new(Report::Inspect(
            InspectReport {
                images: vec![report],
            },
        ))));
    }
    if choice.platform.is_none() {
        return Err(CommandError::Failed(Box::new(Report::Pick(PickReport {
            choice,
            explain: true,
        }))));
    }
    Ok(choice)
}

/// Options of `archctl run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--engine`, else `ARCHCTL_ENGINE`, else the first engine on PATH.
    pub engine: Option<String>,
    pub dry_run: bool,
    pub no_emulation: bool,
    /// `[ENGINE-RUN-OPTIONS...] IMAGE [COMMAND [ARG...]]`.
    pub args: Vec<OsString>,
}

/// `archctl run`: choose the platform, make sure emulation is there when needed, and
/// build the engine command. The caller execs it (or prints it for `--dry-run`).
pub fn plan_run(
    ctx: &Context,
    opts: &RunOptions,
    registry: registry::Options,
) -> Result<RunPlan, CommandError> {
    let run = parse_run_args(&opts.args)?;
    let engine = match &opts.engine {
        Some(e) => Engine::parse(e)?,
        None => Engine::detect()?,
    };
    let (platform, mode, emulator) = match &run.platform {
        Some(p) => {
            let host = host_platform(ctx, &PickOptions::default())?;
            let want = Platform::parse(p)?;
            match host.native_rank(&want) {
                Ok(_) => (p.clone(), Mode::Native, None),
                Err(why) => {
                    let rule = qemu_target(ctx.table, &want).ok_or_else(|| {
                        CommandError::Usage(format!(
                            "--platform {p}: {why}, and no QEMU target runs it"
                        ))
                    })?;
                    if qemu_target(ctx.table, &host.platform).is_some_and(|h| h.name == rule.name) {
                        // The host's own architecture at a level this CPU lacks (amd64/v4
                        // on a v3 CPU): never emulated; the engine runs it as asked.
                        (p.clone(), Mode::Native, None)
                    } else {
                        (p.clone(), Mode::Emulated, Some(rule.name.clone()))
                    }
                }
            }
        }
        None => {
            let c = pick(
                ctx,
                &run.image,
                &PickOptions {
                    no_emulation: opts.no_emulation,
                    ..Default::default()
                },
                registry,
            )?;
            match (c.platform, c.mode) {
                (Some(p), Some(m)) => (p, m, c.emulator),
                _ => return Err(CommandError::Usage("no usable platform".into())),
            }
        }
    };
    let mut enable = None;
    if let (Mode::Emulated, Some(arch)) = (mode, &emulator) {
        let native = ctx.native_all();
        let rules: Vec<&Rule> = ctx.table.get(arch).into_iter().collect();
        if !emulation_state(ctx, &[], &native).registered.contains(arch) {
            if !opts.dry_run && !nix::unistd::geteuid().is_root() {
                return Err(CommandError::Refused(format!(
                    "{platform} needs emulation, and no handler for {arch} is registered; run `sudo archctl enable {arch}` once"
                )));
            }
            enable = Some(arch.clone());
            if !opts.dry_run {
                let eo = EnableOptions {
                    selection: Selection::Archs(rules.iter().map(|r| r.name.clone()).collect()),
                    search: Search::default(),
                    flags: Flags::FIX_BINARY,
                    force: false,
                    skip_missing: false,
                    skip_conflicts: false,
                };
                binfmt::enable(ctx, &eo, true, false, verify::DEFAULT_TIMEOUT)?;
            }
        }
    }
    let argv = command_line(engine, &platform, &run);
    Ok(RunPlan {
        command: argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        argv,
        platform,
        mode,
        emulator,
        user_platform: run.platform.is_some(),
        enable,
    })
}

/// Replace this process with the engine command. Returns only on error.
pub fn exec_run(plan: &RunPlan) -> CommandError {
    let Some((program, args)) = plan.argv.split_first() else {
        return CommandError::Usage("empty command".into());
    };
    super::exec::replace_process(program, args)
}
