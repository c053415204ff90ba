//! The binfmt_misc commands: enable, disable, status, test, boot, export.

use std::{path::Path, time::Duration};

use super::{CommandError, Context};
use crate::{
    arch::{Rule, hex},
    binfmt::{Entry, Matcher, handlers_for},
    config::Config,
    host::Native,
    ns,
    plan::{self, Action, EnableOptions, Plan, Selection},
    report::{
        BinfmtReport, BootReport, ChangeReport, EntryReport, EntryStatus, ExportEntry,
        ExportReport, HostReport, Report, StatusReport, TestReport,
    },
    serve,
    verify::{self, Job, Mode, TestResult},
};

impl Context {
    /// Mount binfmt_misc if needed; true when this call mounted it.
    fn ensure_mounted(&self) -> Result<bool, CommandError> {
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

    fn selected_rules(&self, selection: &Selection) -> Result<Vec<&'static Rule>, CommandError> {
        Ok(match selection {
            Selection::All => self.table.rules().iter().collect(),
            Selection::Archs(names) => self.table.lookup_all(names)?,
        })
    }

    /// The native set a selection needs: all of it for `--all`, else only when a rule
    /// of the host's family is involved.
    fn native_for_selection(&self, selection: &Selection, rules: &[&Rule]) -> Native {
        match selection {
            Selection::All => self.native_all(),
            Selection::Archs(_) => self.native_for(rules),
        }
    }

    fn change_report(&self, plan: &Plan, dry_run: bool, mounted: bool) -> ChangeReport {
        ChangeReport {
            host: self.host.name().to_string(),
            binfmt_dir: self.fs.dir().display().to_string(),
            dry_run,
            mounted,
            entries: entry_reports(plan, dry_run),
            warnings: plan.warnings.clone(),
            unserved: Vec::new(),
            error: None,
        }
    }
}

fn entry_reports(plan: &Plan, dry_run: bool) -> Vec<EntryReport> {
    plan.steps
        .iter()
        .map(|s| {
            let shown = s.interpreter_and_flags();
            EntryReport {
                arch: s.arch.clone(),
                name: s.name.clone(),
                action: s.action(),
                interpreter: shown.map(|(i, _)| i.to_string()),
                flags: shown.map(|(_, f)| f.to_string()),
                verified: None,
                equivalent: s.equivalent().map(str::to_string),
                note: s.note.clone(),
                register: if dry_run && s.change().is_some() {
                    s.registration().map(|r| r.register_string())
                } else {
                    None
                },
            }
        })
        .collect()
}

/// `archctl enable`: plan, apply, verify; any failure or signal rolls the run back. An
/// architecture left unserved (a conflict skipped under `--all`, a named one without
/// emulator) fails the command after everything else was registered and verified.
pub fn enable(
    ctx: &Context,
    opts: &EnableOptions,
    verify_after: bool,
    dry_run: bool,
    timeout: Duration,
) -> Result<ChangeReport, CommandError> {
    let report = enable_all_served(ctx, opts, verify_after, dry_run, timeout)?;
    if report.unserved.is_empty() {
        Ok(report)
    } else {
        Err(CommandError::Failed(Box::new(Report::Change(report))))
    }
}

/// A mount made by this run, taken back when the run fails (dropped without `keep`).
struct MountGuard<'a> {
    fs: &'a dyn crate::binfmt::BinfmtFs,
    armed: bool,
}

impl MountGuard<'_> {
    fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for MountGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.fs.unmount();
        }
    }
}

fn mounted_now(ctx: &Context) -> bool {
    ctx.fs.is_mounted().unwrap_or(false)
}

/// Proof for the plan: each rule's test program through the table as it is now (the
/// kernel picks the handler, as it will for real programs).
fn prove(timeout: Duration) -> impl Fn(&[(&Rule, &Entry)]) -> Vec<Result<(), String>> {
    move |pairs| {
        let jobs: Vec<Job> = pairs
            .iter()
            .map(|(r, e)| Job {
                arch: r.name.clone(),
                mode: Mode::Emulated,
                handlers: vec![e.name.clone()],
            })
            .collect();
        verify::run(&jobs, timeout)
            .into_iter()
            .map(|r| {
                if r.ok {
                    Ok(())
                } else {
                    Err(r.error.unwrap_or_else(|| "failed".into()))
                }
            })
            .collect()
    }
}

/// [`enable`] without failing on unserved architectures: the report lists them.
fn enable_all_served(
    ctx: &Context,
    opts: &EnableOptions,
    verify_after: bool,
    dry_run: bool,
    timeout: Duration,
) -> Result<ChangeReport, CommandError> {
    let rules = ctx.selected_rules(&opts.selection)?;
    let mounted = if dry_run {
        false
    } else {
        ctx.ensure_mounted()?
    };
    // A run that fails takes back the mount it made, leaving the system as it was.
    let mount = MountGuard {
        fs: ctx.fs.as_ref(),
        armed: mounted,
    };
    let _lock = if dry_run { None } else { Some(ctx.fs.lock()?) };
    // Registering while the kernel ignores every entry would report success for nothing.
    if !dry_run && !ctx.fs.status_enabled()? {
        return Err(crate::binfmt::BinfmtError::SwitchedOff {
            path: ctx.fs.dir().to_path_buf(),
        }
        .into());
    }
    // Mounted by now unless this is a dry run.
    let entries = if dry_run {
        ctx.entries_if_mounted()?
    } else {
        ctx.fs.entries()?
    };
    let native = ctx.native_for_selection(&opts.selection, &rules);
    let plan = plan::plan_enable(
        ctx.table,
        &ctx.host,
        &native,
        &entries,
        opts,
        &prove(timeout),
    )?;
    let mut report = ctx.change_report(&plan, dry_run, mounted);
    let named = !matches!(opts.selection, Selection::All);
    report.unserved = plan
        .steps
        .iter()
        .filter(|s| s.unserved(named))
        .map(|s| s.arch.clone())
        .collect();
    if !report.unserved.is_empty() {
        report.error = Some(unserved_summary(&plan, named));
    }
    if !native.undecided.is_empty() {
        report.warnings.push(format!(
            "could not tell whether {} run natively (kernel without private binfmt_misc instances, and a handler claims them)",
            native.undecided.join(", ")
        ));
    }
    if dry_run {
        if mounted_now(ctx) && !ctx.fs.status_enabled().unwrap_or(true) {
            report.warnings.push(format!(
                "binfmt_misc is switched off at {} (status: disabled): nothing registered would be used",
                ctx.fs.dir().display()
            ));
        }
        return Ok(report);
    }
    // From the first write until the result is final, signals only set a flag: an
    // interrupted run rolls back instead of dying half-way.
    let _signals = crate::interrupt::Guard::install();
    // What this run registers is unproven until its test program has run: remembered
    // before the first write, so a run killed during verification leaves it on record.
    let changed: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| {
            matches!(
                s.change(),
                Some(
                    plan::Change::Register(_)
                        | plan::Change::Replace { .. }
                        | plan::Change::Enable(_)
                )
            )
        })
        .map(|s| s.name.as_str())
        .collect();
    // Read only when it can matter: a run that neither changes nor proves anything (a
    // warm boot) leaves the list as it is.
    let mut unproven = if verify_after || !changed.is_empty() {
        verify::Unproven::load(ctx.fs.dir())
    } else {
        verify::Unproven::untouched()
    };
    let was_unproven = |s: &plan::Step| {
        s.action() == Action::Unchanged && s.equivalent().is_none() && unproven.contains(&s.name)
    };
    let earlier: Vec<usize> = if verify_after {
        (0..plan.steps.len())
            .filter(|&i| was_unproven(&plan.steps[i]))
            .collect()
    } else {
        Vec::new()
    };
    if !changed.is_empty() {
        unproven.add(changed.iter().copied());
        unproven.store();
    }
    let applied = plan::apply(&plan, ctx.fs.as_ref())?;
    if !verify_after {
        applied.keep();
        mount.keep();
        return Ok(report);
    }
    // Entries registered earlier and never proven are proven now (they are not this
    // run's to roll back: a failure leaves them unserved).
    if !earlier.is_empty() {
        let jobs: Vec<Job> = earlier
            .iter()
            .map(|&i| Job {
                arch: plan.steps[i].arch.clone(),
                mode: Mode::Emulated,
                handlers: vec![plan.steps[i].name.clone()],
            })
            .collect();
        for (&i, r) in earlier.iter().zip(verify::run(&jobs, timeout)) {
            let e = &mut report.entries[i];
            e.verified = Some(r.ok);
            if r.ok {
                unproven.remove(&e.name);
            } else {
                let why = format!(
                    "registered earlier and never proven: its test program failed: {}",
                    r.error.as_deref().unwrap_or("failed")
                );
                report.unserved.push(e.arch.clone());
                let line = format!("{}: {why}", e.arch);
                report.error = Some(match report.error.take() {
                    Some(before) => format!("{before}; {line}"),
                    None => line,
                });
                e.note = Some(why);
            }
        }
    }
    let (indices, jobs): (Vec<usize>, Vec<Job>) = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.change().is_some())
        .map(|(i, s)| {
            let job = Job {
                arch: s.arch.clone(),
                mode: Mode::Emulated,
                handlers: vec![s.name.clone()],
            };
            (i, job)
        })
        .unzip();
    let results = verify::run(&jobs, timeout);
    let mut failures = Vec::new();
    for (i, r) in indices.iter().zip(&results) {
        report.entries[*i].verified = Some(r.ok);
        // Proven, or about to be rolled back: either way no longer unproven.
        if r.ok || !crate::interrupt::interrupted() {
            unproven.remove(&plan.steps[*i].name);
        }
        if !r.ok {
            failures.push(format!(
                "{}: {}",
                r.arch,
                r.error.as_deref().unwrap_or("failed")
            ));
        }
    }
    // boot: the entries that failed go back out alone; the verified ones stay.
    if opts.isolate_failures && !failures.is_empty() && !crate::interrupt::interrupted() {
        let mut failed: Vec<&str> = Vec::new();
        for (i, r) in indices.iter().zip(&results) {
            if !r.ok {
                failed.push(plan.steps[*i].name.as_str());
            }
        }
        let mut applied = applied;
        let rolled = applied.roll_back_entries(&failed);
        applied.keep();
        for (i, r) in indices.iter().zip(&results) {
            if r.ok {
                continue;
            }
            let e = &mut report.entries[*i];
            e.action = Action::RolledBack;
            e.note = Some(format!(
                "verification failed: {}; this entry was {}",
                r.error.as_deref().unwrap_or("failed"),
                if rolled.errors.is_empty() {
                    "taken back out, the others kept".to_string()
                } else {
                    format!("not fully taken back out ({rolled})")
                }
            ));
            report.unserved.push(e.arch.clone());
        }
        let summary = format!("verification failed: {}", failures.join("; "));
        report.error = Some(match report.error.take() {
            Some(before) => format!("{before}; {summary}"),
            None => format!("{summary} (rolled back alone; everything else is in place)"),
        });
        unproven.store();
        mount.keep();
        return Ok(report);
    }
    unproven.store();
    let why = if crate::interrupt::interrupted() {
        "interrupted by a signal during verification".to_string()
    } else if !failures.is_empty() {
        format!("verification failed: {}", failures.join("; "))
    } else {
        applied.keep();
        mount.keep();
        return Ok(report);
    };
    report.error = Some(format!("{why} ({})", applied.roll_back()));
    Err(CommandError::Failed(Box::new(Report::Change(report))))
}

/// The error line of a run that left architectures unserved: each with its reason.
fn unserved_summary(plan: &Plan, named: bool) -> String {
    let reasons: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| s.unserved(named))
        .map(|s| match &s.note {
            Some(n) => format!("{}: {n}", s.arch),
            None => s.arch.clone(),
        })
        .collect();
    format!(
        "{} of the selected architectures not served (everything else is in place): {}",
        reasons.len(),
        reasons.join("; ")
    )
}

/// Register, verified, the handlers containers of these architectures need (`run` and
/// `compose-platforms`, as root, when no working handler is there).
pub(super) fn register_for_containers(
    ctx: &Context,
    archs: &[String],
) -> Result<ChangeReport, CommandError> {
    let opts = EnableOptions {
        selection: Selection::Archs(archs.to_vec()),
        search: crate::emulator::Search::default(),
        flags: crate::binfmt::Flags::FIX_BINARY,
        force: false,
        skip_missing: false,
        skip_conflicts: false,
        isolate_failures: false,
    };
    enable(ctx, &opts, true, false, verify::DEFAULT_TIMEOUT)
}

/// `archctl disable`.
pub fn disable(
    ctx: &Context,
    selection: &Selection,
    dry_run: bool,
) -> Result<ChangeReport, CommandError> {
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
        plan::apply(&plan, ctx.fs.as_ref())?.keep();
    }
    Ok(ctx.change_report(&plan, dry_run, false))
}

/// Every entry's status. An enabled F entry whose interpreter is not visible in this
/// mount namespace (registered from a container) is working when its test program runs:
/// those are tried, all at once.
pub(super) fn entry_statuses(
    ctx: &Context,
    native: &Native,
    entries: &[Entry],
    keep: &dyn Fn(&str) -> bool,
) -> Vec<EntryStatus> {
    // Classified once; only the kept ones are looked at further (their interpreters
    // read, and tested when not visible).
    let kept: Vec<(&Entry, String)> = entries
        .iter()
        .map(|e| {
            let arch = serve::selected_rules(ctx.table, &e.matcher)
                .first()
                .map_or_else(|| "unknown".to_string(), |r| r.name.clone());
            (e, arch)
        })
        .filter(|(_, arch)| keep(arch))
        .collect();
    let mut statuses: Vec<EntryStatus> = kept
        .iter()
        .map(|(e, arch)| entry_status(ctx, native, e, arch.clone()))
        .collect();
    let invisible: Vec<(usize, Job)> = kept
        .iter()
        .map(|(e, _)| *e)
        .zip(&statuses)
        .enumerate()
        .filter(|(_, (e, st))| !st.interpreter_visible && e.enabled && e.flags.fix_binary)
        .filter_map(|(i, (e, st))| {
            ctx.table.get(&st.arch).map(|r| {
                let job = Job {
                    arch: r.name.clone(),
                    mode: Mode::Emulated,
                    handlers: vec![e.name.clone()],
                };
                (i, job)
            })
        })
        .collect();
    if invisible.is_empty() {
        return statuses;
    }
    let jobs: Vec<Job> = invisible.iter().map(|(_, j)| j.clone()).collect();
    for ((i, _), r) in invisible
        .iter()
        .zip(verify::run(&jobs, verify::DEFAULT_TIMEOUT))
    {
        let st = &mut statuses[*i];
        st.interpreter_tested = true;
        st.interpreter_ok = r.ok;
        st.interpreter_problem = (!r.ok).then(|| {
            format!(
                "not visible here, and its test program failed: {}",
                r.error.as_deref().unwrap_or("failed")
            )
        });
    }
    statuses
}

fn entry_status(ctx: &Context, native: &Native, e: &Entry, arch: String) -> EntryStatus {
    let (magic, mask, offset, extension) = match &e.matcher {
        Matcher::Magic {
            offset,
            magic,
            mask,
        } => (
            Some(hex(magic)),
            mask.as_deref().map(hex),
            Some(*offset),
            None,
        ),
        Matcher::Extension(x) => (None, None, None, Some(format!(".{x}"))),
    };
    let managed = e
        .name
        .strip_prefix("qemu-")
        .is_some_and(|a| ctx.table.get(a).is_some());
    let health = serve::interpreter_health(ctx.table, native, &e.interpreter);
    let visible = !matches!(health, Ok(false));
    let problem = match health {
        Ok(true) => None,
        Ok(false) if e.flags.fix_binary => {
            Some("not visible here (registered from a container?), not tested".to_string())
        }
        Ok(false) => Some(format!(
            "{}: no such file, and without F the kernel looks it up at each exec",
            e.interpreter
        )),
        Err(why) => Some(why),
    };
    EntryStatus {
        name: e.name.clone(),
        arch,
        enabled: e.enabled,
        interpreter: e.interpreter.clone(),
        flags: e.flags.to_string(),
        magic,
        mask,
        offset,
        extension,
        managed,
        interpreter_ok: problem.is_none(),
        interpreter_visible: visible,
        interpreter_tested: false,
        interpreter_problem: problem,
    }
}

/// `archctl status`.
pub fn status(ctx: &Context) -> Result<StatusReport, CommandError> {
    let mounted = ctx.fs.is_mounted()?;
    let (enabled, entries) = if mounted {
        (ctx.fs.status_enabled()?, ctx.fs.entries()?)
    } else {
        (false, Vec::new())
    };
    let native = ctx.native_all();
    let platform =
        crate::platform::HostPlatform::detect(ctx.table, ctx.host.arch.as_deref(), &native.arches)
            .ok()
            .map(|h| h.platform.spelling());
    Ok(StatusReport {
        host: HostReport {
            arch: ctx.host.name().to_string(),
            machine: ctx.host.machine.clone(),
            kernel: ctx.host.kernel.clone(),
            private_binfmt_misc: ns::kernel_at_least(&ctx.host.kernel, 6, 7),
            platform,
        },
        binfmt_misc: BinfmtReport {
            path: ctx.fs.dir().display().to_string(),
            mounted,
            enabled,
        },
        entries: entry_statuses(ctx, &native, &entries, &|_| true),
        native: native.arches,
    })
}

/// `archctl test`: run the test program of each architecture (default: every
/// registered or native one).
pub fn test(
    ctx: &Context,
    archs: &[String],
    timeout: Duration,
) -> Result<TestReport, CommandError> {
    let requested = ctx.table.lookup_all(archs)?;
    let native = ctx.native_all();
    let entries = ctx.entries_if_mounted()?;
    let handlers_of =
        |r: &Rule| -> Vec<String> { handlers_for(&entries, r).map(|e| e.name.clone()).collect() };
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
        return Err(CommandError::Failed(Box::new(Report::Test(report))));
    }
    Ok(report)
}

/// `archctl boot`: apply the configuration (the `enable` logic, idempotent).
pub fn boot(ctx: &Context, config_path: &Path) -> Result<BootReport, CommandError> {
    let start = std::time::Instant::now();
    let (config, found) = Config::load(config_path, ctx.table)?;
    let opts = config.enable_options(ctx.table);
    let result = enable_all_served(
        ctx,
        &opts,
        config.binfmt.verify,
        false,
        verify::DEFAULT_TIMEOUT,
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
    let report = BootReport {
        config: config_path.display().to_string(),
        config_found: found,
        elapsed_ms: elapsed.as_secs_f64() * 1000.0,
        summary,
        result,
    };
    if report.result.unserved.is_empty() {
        Ok(report)
    } else {
        Err(CommandError::Failed(Box::new(Report::Boot(report))))
    }
}

/// `archctl export`: what `enable` would register, as binfmt.d lines or JSON, for
/// systems that prefer systemd-binfmt. Emulators are found and checked exactly as for
/// `enable`.
pub fn export(
    ctx: &Context,
    opts: &EnableOptions,
    output: Option<&Path>,
    binfmt_d: bool,
) -> Result<ExportReport, CommandError> {
    let rules = ctx.selected_rules(&opts.selection)?;
    let native = ctx.native_for_selection(&opts.selection, &rules);
    // As on a fresh boot: no entries yet.
    let plan = plan::plan_enable(ctx.table, &ctx.host, &native, &[], opts, &|_| Vec::new())?;
    let mut report = ExportReport {
        format: if binfmt_d { "binfmt.d" } else { "json" }.into(),
        entries: Vec::new(),
        skipped: Vec::new(),
    };
    for s in &plan.steps {
        match s.change() {
            Some(plan::Change::Register(r)) => report.entries.push(ExportEntry {
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
                    .unwrap_or_else(|| s.action().as_str().to_string())
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
            crate::fsutil::write_atomic(&file, text.as_bytes(), 0o644).map_err(|e| {
                crate::binfmt::BinfmtError::Io {
                    path: e.path,
                    source: e.source,
                }
            })?;
            e.file = Some(file.display().to_string());
        }
    }
    Ok(report)
}
