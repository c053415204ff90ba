//! The commands as library functions: each takes its options, does the work through the
//! modules, and returns a report struct that main prints (human or JSON, same values).

use std::{ffi::OsString, path::PathBuf, time::Duration};

use serde::Serialize;

use crate::{
    Error,
    arch::{Rule, Table, hex, representative_header},
    binfmt::{BinfmtFs, Entry, Flags, KernelBinfmt, Matcher},
    elf::ElfInfo,
    emulator::{self, Search},
    host::{self, Host, Native},
    ns,
    plan::{self, Action, EnableOptions, Plan, Selection},
    registry::inspect::InspectReport,
    verify::{self, Job, Mode, TestResult},
};

/// What every command works with.
pub struct Context {
    pub table: &'static Table,
    pub host: Host,
    pub fs: Box<dyn BinfmtFs>,
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
            host::detect_native(self.table, &self.host, self.fs.as_ref())
        } else {
            Native::host_only(&self.host)
        }
    }

    pub fn native_all(&self) -> Native {
        host::detect_native(self.table, &self.host, self.fs.as_ref())
    }

    /// Mount binfmt_misc if needed; true when this call mounted it.
    fn ensure_mounted(&self) -> Result<bool, Error> {
        if self.fs.is_mounted()? {
            return Ok(false);
        }
        // Serialise racing mounts on the directory underneath, then look again.
        let _guard = self.fs.lock().ok();
        if self.fs.is_mounted()? {
            return Ok(false);
        }
        self.fs.mount()?;
        Ok(true)
    }

    fn selected_rules(&self, selection: &Selection) -> Result<Vec<&'static Rule>, Error> {
        Ok(match selection {
            Selection::All => self.table.rules().iter().collect(),
            Selection::Archs(names) => self.table.lookup_all(names)?,
        })
    }
}

/// One line of `enable`/`disable` output. Field names are the JSON contract.
#[derive(Debug, Clone, Serialize)]
pub struct EntryReport {
    pub arch: String,
    pub name: String,
    pub action: Action,
    pub interpreter: Option<String>,
    pub flags: Option<String>,
    pub verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `--dry-run`: the exact string that would be written to `register`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register: Option<String>,
}

/// Result of `enable` / `disable`.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeReport {
    pub host: String,
    pub binfmt_dir: String,
    pub dry_run: bool,
    /// binfmt_misc was mounted by this run.
    pub mounted: bool,
    pub entries: Vec<EntryReport>,
    pub warnings: Vec<String>,
    /// Set when the run failed after changing things and rolled them back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn entry_reports(plan: &Plan, dry_run: bool) -> Vec<EntryReport> {
    plan.steps
        .iter()
        .map(|s| EntryReport {
            arch: s.arch.clone(),
            name: s.name.clone(),
            action: s.action,
            interpreter: plan::interpreter_of(s).map(|p| p.display().to_string()),
            flags: s
                .registration
                .as_ref()
                .map(|r| r.flags.to_string())
                .or_else(|| s.previous.as_ref().map(|p| p.flags.to_string())),
            verified: None,
            note: s.note.clone(),
            register: if dry_run && s.action.changes() {
                s.registration.as_ref().map(|r| r.register_string())
            } else {
                None
            },
        })
        .collect()
}

/// `archctl enable`.
pub fn enable(
    ctx: &Context,
    opts: &EnableOptions,
    verify_after: bool,
    dry_run: bool,
    timeout: Duration,
) -> Result<ChangeReport, Error> {
    let rules = ctx.selected_rules(&opts.selection)?;
    let mounted = if dry_run {
        false
    } else {
        ctx.ensure_mounted()?
    };
    let _lock = if dry_run { None } else { Some(ctx.fs.lock()?) };
    let entries = if dry_run && !ctx.fs.is_mounted()? {
        Vec::new()
    } else {
        ctx.fs.entries()?
    };
    let native = match opts.selection {
        Selection::All => ctx.native_all(),
        Selection::Archs(_) => ctx.native_for(&rules),
    };
    let plan = plan::plan_enable(ctx.table, &ctx.host, &native, &entries, opts)?;
    let mut report = ChangeReport {
        host: ctx.host.name().to_string(),
        binfmt_dir: ctx.fs.dir().display().to_string(),
        dry_run,
        mounted,
        entries: entry_reports(&plan, dry_run),
        warnings: plan.warnings.clone(),
        error: None,
    };
    if !native.undecided.is_empty() {
        report.warnings.push(format!(
            "could not tell whether {} run natively (kernel without private binfmt_misc instances, and a handler claims them)",
            native.undecided.join(", ")
        ));
    }
    if dry_run {
        return Ok(report);
    }
    // From the first write until the result is final, signals only set a flag: an
    // interrupted run rolls back instead of dying half-way.
    let _signals = crate::interrupt::Guard::install();
    let undo = plan::apply(&plan, ctx.fs.as_ref())?;
    if !verify_after {
        return Ok(report);
    }
    let jobs: Vec<(usize, Job)> = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.action.changes())
        .map(|(i, s)| {
            (
                i,
                Job {
                    arch: s.arch.clone(),
                    mode: Mode::Emulated,
                    handlers: vec![s.name.clone()],
                },
            )
        })
        .collect();
    let only_jobs: Vec<Job> = jobs.iter().map(|(_, j)| j.clone()).collect();
    let results = verify::run(&only_jobs, timeout);
    let mut failures = Vec::new();
    for ((i, _), r) in jobs.iter().zip(&results) {
        report.entries[*i].verified = Some(r.ok);
        if !r.ok {
            failures.push(format!(
                "{}: {}",
                r.arch,
                r.error.as_deref().unwrap_or("failed")
            ));
        }
    }
    if !failures.is_empty() || crate::interrupt::interrupted() {
        let rollback_errors = plan::rollback(&undo, ctx.fs.as_ref());
        let mut msg = if crate::interrupt::interrupted() {
            "interrupted by a signal during verification".to_string()
        } else {
            format!("verification failed: {}", failures.join("; "))
        };
        if rollback_errors.is_empty() {
            msg.push_str(" (changes of this run were rolled back)");
        } else {
            msg.push_str(&format!(
                " (rollback incomplete: {})",
                rollback_errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        report.error = Some(msg);
        return Err(Error::Failed(Box::new(Report::Change(report))));
    }
    Ok(report)
}

/// `archctl disable`.
pub fn disable(ctx: &Context, selection: &Selection, dry_run: bool) -> Result<ChangeReport, Error> {
    // Validate names before touching anything.
    ctx.selected_rules(selection)?;
    let mounted = ctx.fs.is_mounted()?;
    let _lock = if mounted && !dry_run {
        Some(ctx.fs.lock()?)
    } else {
        None
    };
    let entries = if mounted {
        ctx.fs.entries()?
    } else {
        Vec::new()
    };
    let plan = plan::plan_disable(ctx.table, &entries, selection)?;
    if !dry_run {
        let _signals = crate::interrupt::Guard::install();
        plan::apply(&plan, ctx.fs.as_ref())?;
    }
    Ok(ChangeReport {
        host: ctx.host.name().to_string(),
        binfmt_dir: ctx.fs.dir().display().to_string(),
        dry_run,
        mounted: false,
        entries: entry_reports(&plan, dry_run),
        warnings: Vec::new(),
        error: None,
    })
}

/// `archctl status`: host, binfmt_misc, native set, every entry.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub host: HostReport,
    pub binfmt_misc: BinfmtReport,
    pub native: Vec<String>,
    pub entries: Vec<EntryStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub arch: String,
    pub machine: String,
    pub kernel: String,
    /// Linux 6.7+: `archctl exec` and private instances work.
    pub private_binfmt_misc: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BinfmtReport {
    pub path: String,
    pub mounted: bool,
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntryStatus {
    pub name: String,
    /// The architecture whose programs it catches (by magic/mask), or `unknown`.
    pub arch: String,
    pub enabled: bool,
    pub interpreter: String,
    pub flags: String,
    /// Hex, as the kernel prints it; null for extension entries.
    pub magic: Option<String>,
    pub mask: Option<String>,
    pub offset: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// An entry named the way archctl names its own (`qemu-<target>`).
    pub managed: bool,
    /// The interpreter exists, is an ELF for this host and is static.
    pub interpreter_ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter_problem: Option<String>,
}

fn entry_status(ctx: &Context, native: &Native, e: &Entry) -> EntryStatus {
    let (magic, mask, offset, extension, arch) = match &e.matcher {
        Matcher::Magic {
            offset,
            magic,
            mask,
        } => {
            let k = mask.clone().unwrap_or_else(|| vec![0xff; magic.len()]);
            let arch = ctx
                .table
                .classify(*offset, magic, &k)
                .map(|r| r.name.clone());
            (
                Some(hex(magic)),
                mask.as_deref().map(hex),
                Some(*offset),
                None,
                arch,
            )
        }
        Matcher::Extension(x) => (None, None, None, Some(format!(".{x}")), None),
    };
    let managed = e
        .name
        .strip_prefix("qemu-")
        .is_some_and(|a| ctx.table.get(a).is_some());
    let problem = match ElfInfo::read(std::path::Path::new(&e.interpreter)) {
        Err(err) => Some(err.to_string()),
        Ok(info) if !native.runs(ctx.table, &info.header) => {
            Some(format!("{} is not for this host", info.describe()))
        }
        Ok(info) if !info.is_static() => Some(format!(
            "dynamically linked ({}): fails inside containers",
            info.interpreter.unwrap_or_default()
        )),
        Ok(_) => None,
    };
    EntryStatus {
        name: e.name.clone(),
        arch: arch.unwrap_or_else(|| "unknown".into()),
        enabled: e.enabled,
        interpreter: e.interpreter.clone(),
        flags: e.flags.to_string(),
        magic,
        mask,
        offset,
        extension,
        managed,
        interpreter_ok: problem.is_none(),
        interpreter_problem: problem,
    }
}

/// `archctl status`.
pub fn status(ctx: &Context) -> Result<StatusReport, Error> {
    let mounted = ctx.fs.is_mounted()?;
    let (enabled, entries) = if mounted {
        (ctx.fs.status_enabled()?, ctx.fs.entries()?)
    } else {
        (false, Vec::new())
    };
    let native = ctx.native_all();
    Ok(StatusReport {
        host: HostReport {
            arch: ctx.host.name().to_string(),
            machine: ctx.host.machine.clone(),
            kernel: ctx.host.kernel.clone(),
            private_binfmt_misc: ns::kernel_at_least(&ctx.host.kernel, 6, 7),
        },
        binfmt_misc: BinfmtReport {
            path: ctx.fs.dir().display().to_string(),
            mounted,
            enabled,
        },
        entries: entries
            .iter()
            .map(|e| entry_status(ctx, &native, e))
            .collect(),
        native: native.arches,
    })
}

/// `archctl test`.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub host: String,
    pub results: Vec<TestResult>,
}

pub fn test(ctx: &Context, archs: &[String], timeout: Duration) -> Result<TestReport, Error> {
    let requested = ctx.table.lookup_all(archs)?;
    let native = ctx.native_all();
    let entries = if ctx.fs.is_mounted()? {
        ctx.fs.entries()?
    } else {
        Vec::new()
    };
    let handlers_of = |r: &Rule| -> Vec<String> {
        let header = representative_header(r);
        entries
            .iter()
            .filter(|e| e.enabled && e.matcher.matches(&header))
            .map(|e| e.name.clone())
            .collect()
    };
    let rules: Vec<&Rule> = if requested.is_empty() {
        ctx.table
            .rules()
            .iter()
            .filter(|r| native.contains(&r.name) || !handlers_of(r).is_empty())
            .collect()
    } else {
        requested
    };
    let mut jobs = Vec::new();
    let mut missing = Vec::new();
    for r in rules {
        let handlers = handlers_of(r);
        if native.contains(&r.name) {
            jobs.push(Job {
                arch: r.name.clone(),
                mode: Mode::Native,
                handlers: Vec::new(),
            });
        } else if handlers.is_empty() {
            let job = Job {
                arch: r.name.clone(),
                mode: Mode::Emulated,
                handlers,
            };
            missing.push(TestResult::failed(
                &job,
                format!(
                    "no enabled binfmt_misc handler for {0} (run `archctl enable {0}`)",
                    r.name
                ),
            ));
        } else {
            jobs.push(Job {
                arch: r.name.clone(),
                mode: Mode::Emulated,
                handlers,
            });
        }
    }
    let mut results = verify::run(&jobs, timeout);
    results.extend(missing);
    let report = TestReport {
        host: ctx.host.name().to_string(),
        results,
    };
    if report.results.iter().any(|r| !r.ok) {
        return Err(Error::Failed(Box::new(Report::Test(report))));
    }
    Ok(report)
}

/// `archctl exec`: register the architectures in a private binfmt_misc instance and
/// replace this process with the command. Returns only on error.
pub fn exec(
    table: &'static Table,
    archs: &[String],
    search: &Search,
    flags: Flags,
    command: &[OsString],
) -> Error {
    match exec_inner(table, archs, search, flags, command) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn exec_inner(
    table: &'static Table,
    archs: &[String],
    search: &Search,
    flags: Flags,
    command: &[OsString],
) -> Result<std::convert::Infallible, Error> {
    use std::os::unix::process::CommandExt;
    let rules = table.lookup_all(archs)?;
    if search.explicit.is_some() && rules.len() > 1 {
        return Err(plan::PlanError::EmulatorForMany(rules.len()).into());
    }
    let Some((program, args)) = command.split_first() else {
        return Err(Error::Usage(
            "no command: write it after `--`, e.g. `archctl exec --arch aarch64 -- ./prog`".into(),
        ));
    };
    // Everything that can fail on bad input is checked before entering the namespace.
    let ctx = Context::new(PathBuf::from(crate::binfmt::DEFAULT_DIR));
    let native = ctx.native_for(&rules);
    let mut regs = Vec::new();
    for r in &rules {
        if ctx.host.is_host(r) || native.contains(&r.name) {
            continue;
        }
        let emu = search
            .find(r, table, &native, flags.fix_binary)
            .map_err(|source| plan::PlanError::Emulator {
                arch: r.name.clone(),
                source,
            })?;
        regs.push(crate::binfmt::Registration {
            name: r.entry_name(),
            offset: r.offset,
            magic: r.magic.clone(),
            mask: r.mask.clone(),
            interpreter: emu.path.to_string_lossy().into_owned(),
            flags,
        });
    }
    let inst = ns::enter_private_binfmt()?;
    let fs = KernelBinfmt::new(&inst.dir);
    for reg in &regs {
        fs.register(reg)?;
    }
    inst.drop_to_original_ids()?;
    let err = std::process::Command::new(program).args(args).exec();
    Err(Error::Exec {
        program: program.to_string_lossy().into_owned(),
        source: err,
    })
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
/// emulators (for the targets that run the offered platforms).
pub fn emulation_state(
    ctx: &Context,
    wanted: &[&Rule],
    native: &Native,
) -> crate::platform::Emulation {
    let mut e = crate::platform::Emulation::default();
    if let Ok(true) = ctx.fs.is_mounted()
        && let Ok(entries) = ctx.fs.entries()
    {
        for entry in entries.iter().filter(|x| x.enabled) {
            let st = entry_status(ctx, native, entry);
            if st.interpreter_ok && st.arch != "unknown" {
                e.registered.push(st.arch);
            }
        }
    }
    for r in wanted {
        if Search::default().find(r, ctx.table, native, true).is_ok() {
            e.installed.push(r.name.clone());
        }
    }
    e
}

/// The host platform a choice is made for: given, or this host's.
fn host_platform(
    ctx: &Context,
    opts: &PickOptions,
) -> Result<crate::platform::HostPlatform, Error> {
    use crate::platform::HostPlatform;
    let usage = |e: crate::platform::PlatformError| Error::Usage(e.to_string());
    match &opts.host_platform {
        Some(p) => HostPlatform::given(p, opts.no_aarch32).map_err(usage),
        None => {
            let native = ctx.native_all();
            let mut h = HostPlatform::detect(ctx.table, ctx.host.arch.as_deref(), &native.arches)
                .map_err(usage)?;
            if opts.no_aarch32 {
                h.aarch32 = false;
            }
            Ok(h)
        }
    }
}

/// Inspect images (concurrently, one connection pool) and choose for each.
fn choose_for(
    ctx: &Context,
    images: &[String],
    opts: &PickOptions,
    registry: crate::registry::Options,
) -> Result<
    Vec<(
        crate::registry::inspect::ImageReport,
        crate::platform::Choice,
    )>,
    Error,
> {
    use crate::platform::{Platform, choose, qemu_target};
    let host = host_platform(ctx, opts)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::registry::RegistryError::Client(e.to_string()))?;
    let inspector = crate::registry::inspect::Inspector::new(registry)?;
    let reports = runtime.block_on(inspector.inspect_all(images)).images;
    let native = ctx.native_all();
    let wanted: Vec<&Rule> = reports
        .iter()
        .flat_map(|r| r.platforms.iter())
        .filter_map(|p| qemu_target(ctx.table, &Platform::from_entry(p)))
        .collect();
    let mut emu = emulation_state(ctx, &wanted, &native);
    emu.refused = opts.no_emulation;
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
    registry: crate::registry::Options,
) -> Result<crate::platform::Choice, Error> {
    let mut v = choose_for(ctx, &[image.to_string()], opts, registry)?;
    let Some((report, choice)) = v.pop() else {
        return Err(Error::Usage("no image".into()));
    };
    if report.error.is_some() {
        return Err(Error::Failed(Box::new(Report::Inspect(InspectReport {
            images: vec![report],
        }))));
    }
    if choice.platform.is_none() {
        return Err(Error::Failed(Box::new(Report::Pick(choice))));
    }
    Ok(choice)
}

/// One service of `archctl compose-platforms`.
#[derive(Debug, Clone, Serialize)]
pub struct ComposeService {
    pub service: String,
    pub image: Option<String>,
    pub platform: Option<String>,
    pub mode: Option<crate::platform::Mode>,
    pub emulator: Option<String>,
    /// Why no platform is set for it (built locally, set by the user, or an error).
    pub note: Option<String>,
    pub error: Option<String>,
}

/// `archctl compose-platforms`: a compose override setting `platform:` per service.
#[derive(Debug, Clone, Serialize)]
pub struct ComposeReport {
    pub file: String,
    pub services: Vec<ComposeService>,
    /// The override file's text.
    pub r#override: String,
}

/// Read a compose file's services and choose a platform for each image.
pub fn compose_platforms(
    ctx: &Context,
    file: &std::path::Path,
    opts: &PickOptions,
    registry: crate::registry::Options,
) -> Result<ComposeReport, Error> {
    use yaml_rust2::{Yaml, YamlLoader};
    let bad = |why: String| Error::Usage(format!("{}: {why}", file.display()));
    let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
    let docs = YamlLoader::load_from_str(&text).map_err(|e| bad(e.to_string()))?;
    let services = docs
        .first()
        .map(|d| &d["services"])
        .and_then(Yaml::as_hash)
        .ok_or_else(|| bad("no `services:` mapping".into()))?;
    let mut out: Vec<ComposeService> = Vec::new();
    let mut images = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap_or_default().to_string();
        let image = svc["image"].as_str().map(str::to_string);
        let mut s = ComposeService {
            service: name,
            image: image.clone(),
            platform: None,
            mode: None,
            emulator: None,
            note: None,
            error: None,
        };
        if let Some(p) = svc["platform"].as_str() {
            s.note = Some(format!("platform {p} set in the file"));
        } else if image.is_none() {
            s.note = Some("no image (built locally)".into());
        } else if let Some(i) = &image {
            images.push(i.clone());
        }
        out.push(s);
    }
    let mut chosen = choose_for(ctx, &images, opts, registry)?.into_iter();
    for s in out.iter_mut().filter(|s| s.note.is_none()) {
        let Some((report, c)) = chosen.next() else {
            break;
        };
        s.error = report.error.or(c.error);
        s.platform = c.platform;
        s.mode = c.mode;
        s.emulator = c.emulator;
    }
    let mut yaml = format!(
        "# Written by `archctl compose-platforms {}`: use with\n#   docker compose -f {} -f THIS_FILE up\nservices:\n",
        file.display(),
        file.display()
    );
    for s in &out {
        match (&s.platform, &s.note, &s.error) {
            (Some(p), _, _) => {
                let how = match (s.mode, &s.emulator) {
                    (Some(crate::platform::Mode::Emulated), Some(e)) => format!("emulated ({e})"),
                    _ => "native".into(),
                };
                yaml.push_str(&format!(
                    "  {}:\n    platform: {p}  # {how}\n",
                    yaml_key(&s.service)
                ));
            }
            (None, Some(n), _) => yaml.push_str(&format!("  # {}: {n}\n", s.service)),
            (None, None, Some(e)) => yaml.push_str(&format!("  # {}: {e}\n", s.service)),
            _ => {}
        }
    }
    let report = ComposeReport {
        file: file.display().to_string(),
        services: out,
        r#override: yaml,
    };
    if report.services.iter().any(|s| s.error.is_some()) {
        return Err(Error::Failed(Box::new(Report::Compose(report))));
    }
    Ok(report)
}

/// A mapping key, quoted when YAML needs it.
fn yaml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// `archctl boot`: the configuration applied, and a one-line summary.
#[derive(Debug, Clone, Serialize)]
pub struct BootReport {
    pub config: String,
    /// False when the file does not exist (the defaults were applied).
    pub config_found: bool,
    pub elapsed_ms: f64,
    pub summary: String,
    pub result: ChangeReport,
}

/// Apply the configuration (the `enable` logic, idempotent).
pub fn boot(ctx: &Context, config_path: &std::path::Path) -> Result<BootReport, Error> {
    let start = std::time::Instant::now();
    let (config, found) = crate::config::Config::load(config_path, ctx.table)?;
    let opts = config.enable_options(ctx.table);
    let result = enable(
        ctx,
        &opts,
        config.binfmt.verify,
        false,
        crate::verify::DEFAULT_TIMEOUT,
    )?;
    let elapsed = start.elapsed();
    let count = |a: Action| result.entries.iter().filter(|e| e.action == a).count();
    let summary = format!(
        "archctl boot: {} registered, {} replaced, {} enabled, {} unchanged, {} native, {} foreign, {} conflicting, {} without emulator ({}{}) in {:.1} ms",
        count(Action::Registered),
        count(Action::Replaced),
        count(Action::Enabled),
        count(Action::Unchanged),
        count(Action::SkippedNative),
        count(Action::SkippedForeign),
        count(Action::SkippedConflict),
        count(Action::SkippedMissing),
        config_path.display(),
        if found { "" } else { " not found: defaults" },
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(BootReport {
        config: config_path.display().to_string(),
        config_found: found,
        elapsed_ms: elapsed.as_secs_f64() * 1000.0,
        summary,
        result,
    })
}

/// One exported entry.
#[derive(Debug, Clone, Serialize)]
pub struct ExportEntry {
    pub arch: String,
    pub name: String,
    pub interpreter: String,
    pub flags: String,
    pub offset: u8,
    /// Hex, as the kernel prints it.
    pub magic: String,
    pub mask: String,
    /// The line for `register` (and for a binfmt.d file).
    pub register: String,
    /// `--output`: the file written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// `archctl export`.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub format: String,
    pub entries: Vec<ExportEntry>,
    /// Targets left out, and why (native, no emulator).
    pub skipped: Vec<String>,
}

/// What `enable` would register, as binfmt.d lines or JSON, for systems that prefer
/// systemd-binfmt. Emulators are found and checked exactly as for `enable`.
pub fn export(
    ctx: &Context,
    opts: &EnableOptions,
    output: Option<&std::path::Path>,
    binfmt_d: bool,
) -> Result<ExportReport, Error> {
    let rules = ctx.selected_rules(&opts.selection)?;
    let native = match opts.selection {
        Selection::All => ctx.native_all(),
        Selection::Archs(_) => ctx.native_for(&rules),
    };
    // As on a fresh boot: no entries yet.
    let plan = plan::plan_enable(ctx.table, &ctx.host, &native, &[], opts)?;
    let mut report = ExportReport {
        format: if binfmt_d { "binfmt.d" } else { "json" }.into(),
        entries: Vec::new(),
        skipped: Vec::new(),
    };
    for s in &plan.steps {
        match &s.registration {
            Some(r) if s.action == Action::Registered => report.entries.push(ExportEntry {
                arch: s.arch.clone(),
                name: r.name.clone(),
                interpreter: r.interpreter.clone(),
                flags: r.flags.to_string(),
                offset: r.offset,
                magic: hex(&r.magic),
                mask: hex(&r.mask),
                register: r.register_string(),
                file: None,
            }),
            _ => report.skipped.push(format!(
                "{}: {}",
                s.arch,
                s.note
                    .clone()
                    .unwrap_or_else(|| s.action.as_str().to_string())
            )),
        }
    }
    if let Some(dir) = output {
        let io = |e: std::io::Error| crate::binfmt::BinfmtError::Io {
            path: dir.to_path_buf(),
            source: e,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        for e in &mut report.entries {
            let (file, text) = if binfmt_d {
                (
                    dir.join(format!("{}.conf", e.name)),
                    format!(
                        "# Written by archctl export ({}).\n{}\n",
                        e.arch, e.register
                    ),
                )
            } else {
                (
                    dir.join(format!("{}.json", e.name)),
                    serde_json::to_string_pretty(&*e).unwrap_or_default() + "\n",
                )
            };
            let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
            std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(io)?;
            tmp.persist(&file).map_err(|e| io(e.error))?;
            e.file = Some(file.display().to_string());
        }
    }
    Ok(report)
}

/// `archctl config init`: the commented default, atomically, never over an existing
/// file unless `force`.
pub fn config_init(path: &std::path::Path, force: bool) -> Result<(), Error> {
    use crate::config::ConfigError;
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() && !force {
        return Err(ConfigError::Exists {
            path: path.to_path_buf(),
        }
        .into());
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut tmp, crate::config::DEFAULT_TEXT.as_bytes()).map_err(io)?;
    // Readable by all (it holds no secrets): `archctl config show` works for any user.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
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

/// What `archctl run` does (printed by `--dry-run`, then executed).
#[derive(Debug, Clone, Serialize)]
pub struct RunPlan {
    pub platform: String,
    pub mode: crate::platform::Mode,
    pub emulator: Option<String>,
    /// The user's `--platform`, which wins over archctl's choice.
    pub user_platform: bool,
    /// A handler is registered first (root only).
    pub enable: Option<String>,
    pub command: Vec<String>,
    #[serde(skip)]
    pub argv: Vec<OsString>,
}

/// `archctl run`: choose the platform, make sure emulation is there when needed, and
/// build the engine command. The caller execs it (or prints it for `--dry-run`).
pub fn plan_run(
    ctx: &Context,
    opts: &RunOptions,
    registry: crate::registry::Options,
) -> Result<RunPlan, Error> {
    use crate::{
        engine::{Engine, command_line, parse_run_args},
        platform::{HostPlatform, Mode, Platform, qemu_target},
    };
    let engine_err = |e: crate::engine::EngineError| Error::Usage(e.to_string());
    let run = parse_run_args(&opts.args).map_err(engine_err)?;
    let engine = match &opts.engine {
        Some(e) => Engine::parse(e).map_err(engine_err)?,
        None => Engine::detect().map_err(|e| Error::Usage(e.to_string()))?,
    };
    let (platform, mode, emulator) = match &run.platform {
        Some(p) => {
            let native = ctx.native_all();
            let host = HostPlatform::detect(ctx.table, ctx.host.arch.as_deref(), &native.arches)
                .map_err(|e| Error::Usage(e.to_string()))?;
            let want = Platform::parse(p).map_err(|e| Error::Usage(e.to_string()))?;
            match host.native_rank(&want) {
                Ok(_) => (p.clone(), Mode::Native, None),
                Err(why) => {
                    let rule = qemu_target(ctx.table, &want).ok_or_else(|| {
                        Error::Usage(format!("--platform {p}: {why}, and no QEMU target runs it"))
                    })?;
                    (p.clone(), Mode::Emulated, Some(rule.name.clone()))
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
                _ => return Err(Error::Usage("no usable platform".into())),
            }
        }
    };
    let mut enable = None;
    if let (Mode::Emulated, Some(arch)) = (mode, &emulator) {
        let native = ctx.native_all();
        let rules: Vec<&Rule> = ctx.table.get(arch).into_iter().collect();
        if !emulation_state(ctx, &[], &native).registered.contains(arch) {
            if !opts.dry_run && !nix::unistd::geteuid().is_root() {
                return Err(Error::Refused(format!(
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
                enable_with(ctx, &eo)?;
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

/// Enable with verification (as `archctl enable` does), for `run`.
fn enable_with(ctx: &Context, eo: &EnableOptions) -> Result<ChangeReport, Error> {
    enable(ctx, eo, true, false, crate::verify::DEFAULT_TIMEOUT)
}

/// Replace this process with the engine command. Returns only on error.
pub fn exec_run(plan: &RunPlan) -> Error {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = plan.argv.split_first() else {
        return Error::Usage("empty command".into());
    };
    let err = std::process::Command::new(program).args(args).exec();
    Error::Exec {
        program: program.to_string_lossy().into_owned(),
        source: err,
    }
}

/// A report, for errors that carry one (printed before the error line).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Report {
    Change(ChangeReport),
    Test(TestReport),
    Inspect(InspectReport),
    Pick(crate::platform::Choice),
    Compose(ComposeReport),
}

/// `archctl inspect`: the platforms each image offers. Fails (with the report) when any
/// image failed; the others are still reported.
pub fn inspect(images: &[String], opts: crate::registry::Options) -> Result<InspectReport, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::registry::RegistryError::Client(e.to_string()))?;
    let inspector = crate::registry::inspect::Inspector::new(opts)?;
    let report = runtime.block_on(inspector.inspect_all(images));
    if report.images.iter().any(|i| i.error.is_some()) {
        return Err(Error::Failed(Box::new(Report::Inspect(report))));
    }
    Ok(report)
}

/// Where `emulator::DEFAULT_DIRS` live, re-exported for help texts.
pub fn default_emulator_dirs() -> &'static [&'static str] {
    emulator::DEFAULT_DIRS
}
