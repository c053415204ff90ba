//! The container commands: inspect (what a registry offers), pick (what runs here) and
//! run (the engine's `run` on the picked platform, emulation registered on demand).

use std::ffi::OsString;

use super::{CommandError, Context, binfmt, block_on};
use crate::{
    arch::Rule,
    emulator::Search,
    engine::{Engine, EngineError, command_line, parse_run_args},
    host::Native,
    local::{LocalError, LocalImage, Lookup, Source},
    platform::{Choice, Emulation, HostPlatform, Mode, Platform, choose, qemu_target},
    registry::{
        self,
        inspect::{ImageReport, InspectReport, Inspector},
    },
    report::{PickReport, Report, RunPlan},
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
    /// `--engine` (pick): whose local image store to consult when the registry does not
    /// know the image or cannot be reached; else `ARCHCTL_ENGINE`, else the first engine
    /// on PATH, else none (the local lookup is skipped).
    pub engine: Option<String>,
}

/// What this host can emulate right now, for the `wanted` targets (those that run the
/// offered platforms): their enabled, working handlers and installed emulators, and
/// which file would run x86_64 programs (the registered interpreter first).
pub fn emulation_state(ctx: &Context, wanted: &[&Rule], native: &Native) -> Emulation {
    let mut e = Emulation::default();
    if let Ok(true) = ctx.fs.is_mounted()
        && let Ok(entries) = ctx.fs.entries()
    {
        // Only the handlers of the wanted targets: one registered from a container is
        // known to work only by running its test program (a QEMU start-up each).
        let enabled: Vec<_> = entries.into_iter().filter(|x| x.enabled).collect();
        let wanted_arch = |arch: &str| wanted.iter().any(|w| w.name == arch);
        for st in super::binfmt::entry_statuses(ctx, native, &enabled, &wanted_arch) {
            if st.interpreter_ok && st.arch != "unknown" {
                if st.arch == "x86_64" && e.x86_64_emulator.is_none() {
                    e.x86_64_emulator = Some(st.interpreter.clone());
                    // Invisible here (registered from a container): probe through it,
                    // which only a host that does not run x86-64 itself can.
                    if !st.interpreter_visible && !native.contains("x86_64") {
                        e.x86_64_handler = Some(st.name.clone());
                    }
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
pub(super) fn host_platform(
    ctx: &Context,
    opts: &PickOptions,
) -> Result<HostPlatform, CommandError> {
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
    Ok(choose_among(ctx, &host, opts, reports))
}

/// Choose for each inspected image (what the registry offers, or the local image).
pub(super) fn choose_among(
    ctx: &Context,
    host: &HostPlatform,
    opts: &PickOptions,
    reports: Vec<ImageReport>,
) -> Vec<(ImageReport, Choice)> {
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
    reports
        .into_iter()
        .map(|r| {
            let c = choose(ctx.table, &r.reference, host, &r.platforms, &emu);
            (r, c)
        })
        .collect()
}

/// What `pick` decided, and from what.
#[derive(Debug, Clone)]
pub struct Picked {
    pub choice: Choice,
    /// The registry's index, or (when the registry failed) the engine's local image.
    pub source: Source,
    /// Why the local image was used (the registry's failure).
    pub note: Option<String>,
}

/// The engine's local image store, asked at most once: started early when its answer
/// is needed anyway (`run`'s cache check, overlapping the registry query), else only
/// when the registry fails.
struct LocalStore {
    /// None: the engine is detected when the store is asked (pick without --engine).
    engine: Option<Engine>,
    image: String,
    state: Asked,
}

enum Asked {
    Not,
    Started(Result<Lookup, LocalError>),
    Done(Answer),
}

/// What the store said about the image.
#[derive(Clone)]
enum Answer {
    Found(LocalImage),
    /// The engine has no image of that name.
    Absent,
    /// No engine is installed: nothing was asked.
    NoEngine,
    /// The engine could not be asked (not running, not installed, ...).
    Unreadable(String),
}

impl LocalStore {
    fn new(engine: Option<Engine>, image: &str) -> LocalStore {
        LocalStore {
            engine,
            image: image.to_string(),
            state: Asked::Not,
        }
    }

    /// Start the lookup now (when the engine is known), to collect it later.
    fn start(&mut self) {
        if let (Asked::Not, Some(e)) = (&self.state, self.engine) {
            self.state = Asked::Started(Lookup::start(e, &self.image));
        }
    }

    /// The answer: asked now if it was not (detecting the engine when none was
    /// named), waited for if the lookup runs.
    fn get(&mut self) -> Answer {
        if let Asked::Not = self.state {
            if self.engine.is_none() {
                match Engine::detect() {
                    Ok(e) => self.engine = Some(e),
                    Err(EngineError::NotFound) => self.state = Asked::Done(Answer::NoEngine),
                    Err(e) => self.state = Asked::Done(Answer::Unreadable(e.to_string())),
                }
            }
            self.start();
        }
        let state = std::mem::replace(&mut self.state, Asked::Not);
        let answer = match state {
            Asked::Done(a) => a,
            Asked::Started(lookup) => match lookup.and_then(Lookup::finish) {
                Ok(Some(img)) => Answer::Found(img),
                Ok(None) => Answer::Absent,
                Err(e) => Answer::Unreadable(e.to_string()),
            },
            Asked::Not => Answer::NoEngine,
        };
        self.state = Asked::Done(answer.clone());
        answer
    }

    /// The image, if the store was asked and has it; never starts a lookup.
    fn answered(&mut self) -> Option<LocalImage> {
        match self.state {
            Asked::Not => None,
            _ => match self.get() {
                Answer::Found(img) => Some(img),
                _ => None,
            },
        }
    }
}

/// `archctl pick`: the platform an image should run as on this host.
pub fn pick(
    ctx: &Context,
    image: &str,
    opts: &PickOptions,
    registry: registry::Options,
) -> Result<Picked, CommandError> {
    let engine = opts.engine.as_deref().map(Engine::parse).transpose()?;
    pick_in(
        ctx,
        image,
        opts,
        registry,
        &mut LocalStore::new(engine, image),
    )
}

/// Pick from the registry's index; when the registry does not know the image or
/// cannot be reached, from the engine's local image (its platform the one offered).
fn pick_in(
    ctx: &Context,
    image: &str,
    opts: &PickOptions,
    registry: registry::Options,
    store: &mut LocalStore,
) -> Result<Picked, CommandError> {
    let host = host_platform(ctx, opts)?;
    let inspector = Inspector::new(registry)?;
    let mut report = block_on(inspector.inspect(image))?;
    let mut source = Source::Registry;
    let mut note = None;
    if let Some(err) = report.error.clone() {
        match store.get() {
            Answer::Found(local) => {
                note = Some(format!(
                    "{err}; using {}'s local image {image} ({})",
                    local.engine, local.platform
                ));
                source = Source::Local;
                report = ImageReport {
                    reference: report.reference,
                    digest: Some(local.id.clone()),
                    media_type: None,
                    platforms: vec![local.entry()],
                    attestations: Vec::new(),
                    error: None,
                    hint: None,
                };
            }
            Answer::Absent => {
                let engine = store.engine.map_or("the engine", |e| e.program());
                report.error = Some(format!("{err}, and {engine} has no local image {image}"));
            }
            Answer::Unreadable(why) => {
                let local = format!("the local images could not be read: {why}");
                report.hint = Some(match report.hint {
                    Some(h) => format!("{h}; {local}"),
                    None => local,
                });
            }
            Answer::NoEngine => {}
        }
    }
    if report.error.is_some() {
        return Err(CommandError::Failed(Box::new(Report::Inspect(
            InspectReport {
                images: vec![report],
            },
        ))));
    }
    let Some((_, choice)) = choose_among(ctx, &host, opts, vec![report]).pop() else {
        return Err(CommandError::Usage("no image".into()));
    };
    if choice.platform.is_none() {
        return Err(CommandError::Failed(Box::new(Report::Pick(PickReport {
            choice,
            source,
            note,
            explain: true,
        }))));
    }
    Ok(Picked {
        choice,
        source,
        note,
    })
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
    // For podman and nerdctl the cached image decides the pull policy (or, with the
    // user's own `--pull`, a warning), so their store is asked now, alongside the
    // registry. docker fetches the chosen platform by itself: its store is asked only
    // if the registry fails.
    let mut store = LocalStore::new(Some(engine), &run.image);
    if engine.pull_for_other_platform().is_some() {
        store.start();
    }
    let mut source = None;
    let mut note = None;
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
            let picked = pick_in(
                ctx,
                &run.image,
                &PickOptions {
                    no_emulation: opts.no_emulation,
                    ..Default::default()
                },
                registry,
                &mut store,
            )?;
            source = Some(picked.source);
            note = picked.note;
            let c = picked.choice;
            match (c.platform, c.mode) {
                (Some(p), Some(m)) => (p, m, c.emulator),
                _ => return Err(CommandError::Usage("no usable platform".into())),
            }
        }
    };
    // The cache rule: an image cached under this name for another platform than the
    // chosen one must not run in its place.
    let local = store.answered();
    let mut pull = None;
    let mut warn = false;
    if let Some(img) = &local
        && !img.is_platform(&Platform::parse(&platform)?)
    {
        let cached = format!(
            "{}'s cached {} is {}, not {platform}",
            engine.program(),
            run.image,
            img.platform
        );
        match (&run.pull, engine.pull_for_other_platform()) {
            (Some(p), _) => {
                warn = true;
                note = Some(format!(
                    "{cached}; --pull {p} as given decides whether it fetches {platform}"
                ));
            }
            (None, Some(opt)) => {
                pull = Some(opt.to_string());
                note = Some(format!("{cached}: {opt} makes it fetch {platform}"));
            }
            // The engine fetches the chosen platform by itself.
            (None, None) => {}
        }
    }
    let mut enable = None;
    if let (Mode::Emulated, Some(arch)) = (mode, &emulator) {
        let native = ctx.native_all();
        let rules: Vec<&Rule> = ctx.table.get(arch).into_iter().collect();
        if !emulation_state(ctx, &rules, &native)
            .registered
            .contains(arch)
        {
            if !opts.dry_run && !nix::unistd::geteuid().is_root() {
                return Err(CommandError::Refused(format!(
                    "{platform} needs emulation, and no handler for {arch} is registered; run `sudo archctl enable {arch}` once"
                )));
            }
            enable = Some(arch.clone());
            if !opts.dry_run {
                binfmt::register_for_containers(ctx, std::slice::from_ref(arch))?;
            }
        }
    }
    let argv = command_line(engine, &platform, pull.as_deref(), &run);
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
        source,
        local,
        pull,
        note,
        warn,
    })
}

/// Replace this process with the engine command. Returns only on error.
pub fn exec_run(plan: &RunPlan) -> CommandError {
    let Some((program, args)) = plan.argv.split_first() else {
        return CommandError::Usage("empty command".into());
    };
    super::exec::replace_process(program, args)
}
