//! What `enable` and `disable` change: a list of steps computed from the rule table, the
//! current entries and the options. Each step is either a [`Change`] (what is written)
//! or a [`Skip`] (why nothing is), so a step cannot claim one thing and do another.
//! `--dry-run` prints the plan; [`apply`] executes it and returns an [`Applied`] guard
//! that owns the undo log: a failed write, a failed verification and a signal all roll
//! back through [`Applied::roll_back`], with one message.

use std::fmt;

use serde::Serialize;

use crate::{
    arch::{Rule, Table},
    binfmt::{BinfmtError, Entry, Flags, Registration, handlers_for},
    emulator::{EmulatorError, Search},
    host::{Host, Native},
};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--emulator names one file, but {0} architectures were given")]
    EmulatorForMany(usize),
    #[error("{}", .0.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("; "))]
    Conflicts(Vec<Conflict>),
    #[error("{arch}: {source}")]
    Emulator {
        arch: String,
        #[source]
        source: EmulatorError,
    },
    #[error("nothing to do: give architectures (e.g. `archctl enable x86_64`) or --all")]
    NoArchitectures,
    #[error(transparent)]
    Arch(#[from] crate::arch::ArchError),
    #[error("{arch}: {source}")]
    Entry {
        arch: String,
        #[source]
        source: BinfmtError,
    },
}

impl PlanError {
    pub fn hint(&self) -> Option<String> {
        match self {
            PlanError::Conflicts(c) => Some(format!(
                "add --force to replace {}: archctl enable --force {}",
                if c.len() == 1 { "it" } else { "them" },
                c.iter()
                    .map(|c| c.arch.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            PlanError::Emulator { source, .. } => source.hint(),
            PlanError::EmulatorForMany(_) => {
                Some("use --emulator-dir DIR for several architectures".into())
            }
            PlanError::NoArchitectures | PlanError::Arch(_) | PlanError::Entry { .. } => None,
        }
    }

    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            PlanError::EmulatorForMany(_) | PlanError::NoArchitectures | PlanError::Arch(_)
        )
    }
}

/// Which architectures a command acts on.
#[derive(Debug, Clone)]
pub enum Selection {
    Archs(Vec<String>),
    All,
}

#[derive(Debug, Clone)]
pub struct EnableOptions {
    pub selection: Selection,
    pub search: Search,
    pub flags: Flags,
    pub force: bool,
    /// Report targets without a usable emulator as `skipped-missing` instead of failing
    /// (always so with `--all`; `archctl boot` too, so one missing emulator does not
    /// cost a guest all the others).
    pub skip_missing: bool,
    /// Report a differing entry of the same name as `skipped-conflict` instead of
    /// failing (`archctl boot`: one conflict must not cost a guest every other entry).
    pub skip_conflicts: bool,
    /// A registration whose verification fails is rolled back alone (`rolled-back`),
    /// the verified ones kept (`archctl boot`: one bad emulator must not cost a guest
    /// every other entry). Without it, any failure rolls the whole run back.
    pub isolate_failures: bool,
}

/// What happens to one entry. The names are part of the JSON contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Registered,
    Unchanged,
    Replaced,
    /// An identical entry existed but was disabled: it is switched on.
    Enabled,
    SkippedNative,
    SkippedForeign,
    /// `--all` only: no usable emulator installed for this target.
    SkippedMissing,
    /// `boot` only: an entry of the same name exists and differs (e.g. registered from
    /// a distribution's /usr/lib/binfmt.d); left alone unless `force = true`.
    SkippedConflict,
    Removed,
    NotRegistered,
    /// `boot` only: registered, failed its verification, and taken back out alone.
    RolledBack,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Registered => "registered",
            Action::Unchanged => "unchanged",
            Action::Replaced => "replaced",
            Action::Enabled => "enabled",
            Action::SkippedNative => "skipped-native",
            Action::SkippedForeign => "skipped-foreign",
            Action::SkippedMissing => "skipped-missing",
            Action::SkippedConflict => "skipped-conflict",
            Action::Removed => "removed",
            Action::NotRegistered => "not-registered",
            Action::RolledBack => "rolled-back",
        }
    }
}

/// What a step writes to binfmt_misc.
#[derive(Debug, Clone)]
pub enum Change {
    Register(Registration),
    /// A different entry of the same name is removed and this one registered.
    Replace {
        old: Entry,
        new: Registration,
    },
    /// An identical but disabled entry is switched on.
    Enable(Registration),
    Remove(Entry),
}

/// Why a step writes nothing.
#[derive(Debug, Clone)]
pub enum Skip {
    /// The identical entry is registered and enabled.
    Unchanged(Registration),
    /// An entry of archctl's name, not identical, already serves the architecture
    /// ([`crate::serve`]): the step's note says why. `wanted` is what `--force` would
    /// register instead (None when no emulator was found here).
    Equivalent {
        entry: Entry,
        wanted: Option<Registration>,
    },
    /// The host runs the architecture itself.
    Native,
    /// Another entry (named in the note) already handles the architecture; this is what
    /// `--force` would register in front of it.
    Foreign(Registration),
    /// No usable emulator is installed.
    Missing,
    /// An entry of the same name differs (the note says how); left alone (`archctl
    /// boot`). This is what `force = true` would register instead.
    Conflict(Registration),
    /// `disable`: nothing of that name is registered.
    NotRegistered,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Change(Change),
    Skip(Skip),
}

/// One step of a plan: one architecture's entry.
#[derive(Debug, Clone)]
pub struct Step {
    pub arch: String,
    pub name: String,
    pub outcome: Outcome,
    pub note: Option<String>,
}

impl Step {
    /// The reported action (the JSON contract's name for the outcome).
    pub fn action(&self) -> Action {
        match &self.outcome {
            Outcome::Change(Change::Register(_)) => Action::Registered,
            Outcome::Change(Change::Replace { .. }) => Action::Replaced,
            Outcome::Change(Change::Enable(_)) => Action::Enabled,
            Outcome::Change(Change::Remove(_)) => Action::Removed,
            Outcome::Skip(Skip::Unchanged(_) | Skip::Equivalent { .. }) => Action::Unchanged,
            Outcome::Skip(Skip::Native) => Action::SkippedNative,
            Outcome::Skip(Skip::Foreign(_)) => Action::SkippedForeign,
            Outcome::Skip(Skip::Missing) => Action::SkippedMissing,
            Outcome::Skip(Skip::Conflict(_)) => Action::SkippedConflict,
            Outcome::Skip(Skip::NotRegistered) => Action::NotRegistered,
        }
    }

    /// What this step writes, if anything.
    pub fn change(&self) -> Option<&Change> {
        match &self.outcome {
            Outcome::Change(c) => Some(c),
            Outcome::Skip(_) => None,
        }
    }

    /// The entry this step registers, or would register.
    pub fn registration(&self) -> Option<&Registration> {
        match &self.outcome {
            Outcome::Change(Change::Register(r) | Change::Enable(r))
            | Outcome::Change(Change::Replace { new: r, .. })
            | Outcome::Skip(Skip::Unchanged(r) | Skip::Foreign(r) | Skip::Conflict(r)) => Some(r),
            Outcome::Skip(Skip::Equivalent { wanted, .. }) => wanted.as_ref(),
            Outcome::Change(Change::Remove(_))
            | Outcome::Skip(Skip::Native | Skip::Missing | Skip::NotRegistered) => None,
        }
    }

    /// Why an existing entry counts as archctl's own (an equivalent one), if it does.
    pub fn equivalent(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Skip(Skip::Equivalent { .. }) => self.note.as_deref(),
            _ => None,
        }
    }

    /// Is the architecture left without a working handler by this step? A conflict,
    /// or (when the architecture was named, not `--all`) a missing emulator.
    pub fn unserved(&self, named: bool) -> bool {
        match &self.outcome {
            Outcome::Skip(Skip::Conflict(_)) => true,
            Outcome::Skip(Skip::Missing) => named,
            _ => false,
        }
    }

    /// Interpreter and flags for reports: what is registered, else what is removed.
    pub fn interpreter_and_flags(&self) -> Option<(&str, Flags)> {
        if let Outcome::Skip(Skip::Equivalent { entry, .. }) = &self.outcome {
            return Some((entry.interpreter.as_str(), entry.flags));
        }
        match (&self.outcome, self.registration()) {
            (_, Some(r)) => Some((r.interpreter.as_str(), r.flags)),
            (Outcome::Change(Change::Remove(e)), None) => Some((e.interpreter.as_str(), e.flags)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

/// Test runs a plan needs: for each (rule, entry), does the kernel run the rule's test
/// program through that entry's handler? (An entry whose interpreter is not visible, or
/// another build, serves only if it does.) The caller runs them all at once.
pub type Prove<'p> = &'p dyn Fn(&[(&Rule, &Entry)]) -> Vec<Result<(), String>>;

/// What a plan decides for one rule before any test run.
enum Decision {
    Step(Step),
    /// An entry of the same name differs and does not serve the architecture.
    Conflict(Step, Conflict),
    /// The plan fails (e.g. no emulator for a named architecture).
    Fail(PlanError),
    /// Served if `entry`'s handler runs the test program, else `otherwise` (with why).
    Prove {
        entry: Entry,
        serves: Step,
        otherwise: Box<Decision>,
    },
}

/// An entry of archctl's name that differs and does not serve the architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub arch: String,
    pub name: String,
    pub differences: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "entry {} exists and differs: {}",
            self.name, self.differences
        )
    }
}

/// Compute what `enable` would do. Validates everything (emulators, conflicts, and
/// with `prove` whether existing entries work) before anything is written: an error here
/// leaves the system untouched.
pub fn plan_enable(
    table: &Table,
    host: &Host,
    native: &Native,
    entries: &[Entry],
    opts: &EnableOptions,
    prove: Prove<'_>,
) -> Result<Plan, PlanError> {
    let mut warnings = Vec::new();
    let all = matches!(opts.selection, Selection::All);
    let rules: Vec<&Rule> = match &opts.selection {
        Selection::All => table.rules().iter().collect(),
        Selection::Archs(names) if names.is_empty() => return Err(PlanError::NoArchitectures),
        Selection::Archs(names) => table.lookup_all(names)?,
    };
    if opts.search.explicit.is_some() && (all || rules.len() > 1) {
        return Err(PlanError::EmulatorForMany(if all {
            table.rules().len()
        } else {
            rules.len()
        }));
    }
    if !opts.flags.fix_binary {
        warnings.push(
            "flags without F: the kernel looks the emulator up by path at each exec, so containers and chroots (which lack that path) will not find it".into(),
        );
    }
    if opts.flags.credentials {
        warnings.push(
            "flag C: setuid programs run through qemu with raised privileges, and qemu-user does not sanitise its QEMU_* environment for them; use only on trusted systems".into(),
        );
    }
    let mut decisions = Vec::with_capacity(rules.len());
    for rule in rules {
        decisions.push(decide(
            table,
            host,
            native,
            entries,
            opts,
            rule,
            &mut warnings,
        )?);
    }
    // One batch of test runs for every entry that serves only if it works.
    let pending: Vec<(&Rule, &Entry)> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Prove { entry, serves, .. } => table.get(&serves.arch).map(|r| (r, entry)),
            _ => None,
        })
        .collect();
    let mut proofs = if pending.is_empty() {
        Vec::new()
    } else {
        prove(&pending)
    }
    .into_iter();
    let mut steps = Vec::with_capacity(decisions.len());
    let mut conflicts = Vec::new();
    for d in decisions {
        let d = match d {
            Decision::Prove {
                serves, otherwise, ..
            } => match proofs.next() {
                Some(Ok(())) => Decision::Step(serves),
                Some(Err(why)) => otherwise.because(&format!("its test program failed: {why}")),
                None => otherwise.because("its test program was not run"),
            },
            d => d,
        };
        match d {
            Decision::Step(s) => steps.push(s),
            Decision::Conflict(s, c) => {
                if opts.skip_conflicts {
                    steps.push(s);
                } else {
                    conflicts.push(c);
                }
            }
            Decision::Fail(e) => return Err(e),
            Decision::Prove { .. } => {}
        }
    }
    if !conflicts.is_empty() {
        return Err(PlanError::Conflicts(conflicts));
    }
    Ok(Plan { steps, warnings })
}

impl Decision {
    /// A failed proof: what the rule gets instead, the failure added to its reasons.
    fn because(self, why: &str) -> Decision {
        match self {
            Decision::Conflict(mut s, mut c) => {
                c.differences = format!("{}; {why}", c.differences);
                s.note = Some(conflict_note(&c));
                Decision::Conflict(s, c)
            }
            Decision::Step(mut s) => {
                if let Some(n) = &mut s.note {
                    n.push_str(&format!(" (the existing entry: {why})"));
                }
                Decision::Step(s)
            }
            d @ (Decision::Prove { .. } | Decision::Fail(_)) => d,
        }
    }
}

fn conflict_note(c: &Conflict) -> String {
    format!(
        "{} exists and differs: {}; --force (config: force = true) replaces it",
        c.name, c.differences
    )
}

/// An existing entry that serves the architecture, and whether only a test run proves it.
struct Serving {
    serves: Step,
    entry: Entry,
    needs_proof: bool,
}

/// The serving entry's decision, else `otherwise` (which is also what a failed proof
/// gives).
fn serve_or(serving: Option<Serving>, otherwise: impl FnOnce() -> Decision) -> Decision {
    match serving {
        None => otherwise(),
        Some(s) if s.needs_proof => Decision::Prove {
            entry: s.entry,
            serves: s.serves,
            otherwise: Box::new(otherwise()),
        },
        Some(s) => Decision::Step(s.serves),
    }
}

/// One rule's decision (see [`plan_enable`]).
fn decide(
    table: &Table,
    host: &Host,
    native: &Native,
    entries: &[Entry],
    opts: &EnableOptions,
    rule: &Rule,
    warnings: &mut Vec<String>,
) -> Result<Decision, PlanError> {
    let lenient = matches!(opts.selection, Selection::All) || opts.skip_missing;
    let name = rule.entry_name();
    let step = |outcome, note| Step {
        arch: rule.name.clone(),
        name: name.clone(),
        outcome,
        note,
    };
    if host.is_host(rule) || native.contains(&rule.name) {
        let note = format!("{} runs natively on this host", rule.name);
        return Ok(Decision::Step(step(
            Outcome::Skip(Skip::Native),
            Some(note),
        )));
    }
    let existing = entries.iter().find(|e| e.name == name);
    // An existing entry that serves the architecture (not with --force, which asks for
    // archctl's own entry), given its assessment.
    // The existing entry when it serves the architecture (not with --force, which asks
    // for archctl's own entry), given its assessment.
    let serving = |assessed: &Result<crate::serve::Serves, String>,
                   wanted: Option<&Registration>,
                   warnings: &mut Vec<String>| {
        let (Some(e), Ok(s)) = (existing.filter(|_| !opts.force), assessed) else {
            return None;
        };
        warnings.extend(s.warnings.iter().cloned());
        let outcome = Outcome::Skip(Skip::Equivalent {
            entry: e.clone(),
            wanted: wanted.cloned(),
        });
        Some(Serving {
            serves: step(outcome, Some(s.why.clone())),
            entry: e.clone(),
            needs_proof: s.needs_proof(),
        })
    };
    let reg = match opts.search.registration(rule, table, native, opts.flags) {
        Ok(r) => r,
        Err(source) => {
            let otherwise = if lenient {
                Decision::Step(step(Outcome::Skip(Skip::Missing), Some(source.to_string())))
            } else {
                Decision::Fail(PlanError::Emulator {
                    arch: rule.name.clone(),
                    source,
                })
            };
            let assessed = match existing {
                Some(e) if !opts.force => crate::serve::assess(table, native, rule, e, None),
                _ => Err(String::new()),
            };
            return Ok(serve_or(serving(&assessed, None, warnings), || otherwise));
        }
    };
    if let Err(source) = reg.validate() {
        // A path the register syntax cannot carry (`:`, a newline): that architecture
        // alone, when one missing emulator must not cost the others (boot).
        let lenient = matches!(opts.selection, Selection::All) || opts.skip_missing;
        let key = match opts.search.per_arch.get(&rule.name) {
            Some(p) => format!("[emulators] {} = \"{}\": ", rule.name, p.display()),
            None => String::new(),
        };
        if lenient {
            let note = format!("{key}{source}");
            return Ok(Decision::Step(step(
                Outcome::Skip(Skip::Missing),
                Some(note),
            )));
        }
        return Err(PlanError::Entry {
            arch: rule.name.clone(),
            source,
        });
    }
    let foreign: Vec<&Entry> = handlers_for(entries, rule)
        .filter(|e| e.name != name)
        .collect();
    if !foreign.is_empty() && !opts.force {
        let names: Vec<&str> = foreign.iter().map(|e| e.name.as_str()).collect();
        let note = format!(
            "{} already handled by {} ({}); --force registers {name} in front of it",
            rule.name,
            names.join(", "),
            foreign[0].interpreter
        );
        return Ok(Decision::Step(step(
            Outcome::Skip(Skip::Foreign(reg)),
            Some(note),
        )));
    }
    let foreign_note = (!foreign.is_empty()).then(|| {
        format!(
            "takes precedence over {} (the kernel tries the newest entry first)",
            foreign
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    Ok(match existing {
        None => Decision::Step(step(Outcome::Change(Change::Register(reg)), foreign_note)),
        Some(e) if reg.same_as(e) && e.enabled => {
            Decision::Step(step(Outcome::Skip(Skip::Unchanged(reg)), None))
        }
        Some(e) if reg.same_as(e) => {
            Decision::Step(step(Outcome::Change(Change::Enable(reg)), None))
        }
        Some(e) if opts.force => {
            let note = format!("was: {}", reg.differences(e).join(", "));
            let change = Change::Replace {
                old: e.clone(),
                new: reg,
            };
            Decision::Step(step(Outcome::Change(change), Some(note)))
        }
        Some(e) => {
            let assessed = crate::serve::assess(table, native, rule, e, Some(&reg.interpreter));
            let serving = serving(&assessed, Some(&reg), warnings);
            // Not serving (or only if a test run proves it): the conflict, with every
            // difference.
            let conflict = || {
                let mut d = reg.differences(e);
                if !e.enabled {
                    d.push("disabled".into());
                }
                // Why it does not serve, when that is not already the listed difference.
                if let Err(why) = &assessed
                    && !d
                        .iter()
                        .any(|x| x.starts_with(why.as_str()) || why.starts_with(x.as_str()))
                {
                    d.push(why.clone());
                }
                let c = Conflict {
                    arch: rule.name.clone(),
                    name: name.clone(),
                    differences: d.join(", "),
                };
                Decision::Conflict(
                    step(
                        Outcome::Skip(Skip::Conflict(reg.clone())),
                        Some(conflict_note(&c)),
                    ),
                    c,
                )
            };
            serve_or(serving, conflict)
        }
    })
}

/// Compute what `disable` would do: archctl's `qemu-<arch>` entries only; `--all` takes
/// every `qemu-*` entry, never anything else (rosetta, python, ...).
pub fn plan_disable(
    table: &Table,
    entries: &[Entry],
    selection: &Selection,
) -> Result<Plan, PlanError> {
    let mut steps = Vec::new();
    match selection {
        Selection::All => {
            for e in entries.iter().filter(|e| e.name.starts_with("qemu-")) {
                let arch = e
                    .name
                    .strip_prefix("qemu-")
                    .and_then(|a| table.get(a))
                    .map(|r| r.name.clone())
                    .unwrap_or_else(|| "unknown".into());
                steps.push(Step {
                    arch,
                    name: e.name.clone(),
                    outcome: Outcome::Change(Change::Remove(e.clone())),
                    note: None,
                });
            }
        }
        Selection::Archs(names) if names.is_empty() => return Err(PlanError::NoArchitectures),
        Selection::Archs(names) => {
            let rules = table.lookup_all(names)?;
            for r in rules {
                let name = r.entry_name();
                let outcome = match entries.iter().find(|e| e.name == name) {
                    Some(e) => Outcome::Change(Change::Remove(e.clone())),
                    None => Outcome::Skip(Skip::NotRegistered),
                };
                steps.push(Step {
                    arch: r.name.clone(),
                    name,
                    outcome,
                    note: None,
                });
            }
        }
    }
    Ok(Plan {
        steps,
        warnings: Vec::new(),
    })
}

mod apply;
pub use apply::{Applied, ApplyError, RolledBack, apply};

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// An architecture this host does not run (the tests hold on an arm64 host too).
    const FOREIGN: &str = if cfg!(target_arch = "aarch64") {
        "x86_64"
    } else {
        "aarch64"
    };
    use crate::binfmt::{BinfmtFs, MemoryBinfmt};

    struct Fixture {
        _dir: tempfile::TempDir,
        table: &'static Table,
        host: Host,
        native: Native,
        emu_dir: PathBuf,
    }

    impl Fixture {
        /// The fake emulator for `arch`.
        fn emulator(&self, arch: &str) -> String {
            self.emu_dir
                .join(format!("qemu-{arch}-static"))
                .display()
                .to_string()
        }
    }

    /// Fake emulators: the host's own static test program under qemu-<arch>-static names.
    fn fixture() -> Fixture {
        use std::os::unix::fs::PermissionsExt;
        let table = Table::builtin();
        let host = Host::detect(table);
        let dir = tempfile::tempdir().unwrap();
        let prog = crate::testprog::program(host.arch.as_deref().unwrap()).unwrap();
        for a in [FOREIGN, "s390x", "riscv64"] {
            let p = dir.path().join(format!("qemu-{a}-static"));
            std::fs::write(&p, prog.bytes).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Fixture {
            emu_dir: dir.path().to_path_buf(),
            _dir: dir,
            native: Native::host_only(&host),
            table,
            host,
        }
    }

    fn opts(f: &Fixture, archs: &[&str], force: bool) -> EnableOptions {
        EnableOptions {
            selection: Selection::Archs(archs.iter().map(|s| s.to_string()).collect()),
            search: Search {
                explicit: None,
                dir: Some(f.emu_dir.clone()),
                ..Default::default()
            },
            flags: Flags::FIX_BINARY,
            force,
            skip_missing: false,
            skip_conflicts: false,
            isolate_failures: false,
        }
    }

    fn plan(
        f: &Fixture,
        fs: &MemoryBinfmt,
        archs: &[&str],
        force: bool,
    ) -> Result<Plan, PlanError> {
        plan_proven(f, fs, &opts(f, archs, force), &|pairs| {
            pairs
                .iter()
                .map(|_| Err("exec format error".to_string()))
                .collect()
        })
    }

    fn plan_proven(
        f: &Fixture,
        fs: &MemoryBinfmt,
        opts: &EnableOptions,
        prove: Prove<'_>,
    ) -> Result<Plan, PlanError> {
        let entries = fs.entries().unwrap();
        plan_enable(f.table, &f.host, &f.native, &entries, opts, prove)
    }

    fn actions(p: &Plan) -> Vec<Action> {
        p.steps.iter().map(Step::action).collect()
    }

    fn entry_for(f: &Fixture, arch: &str, interpreter: &str, enabled: bool) -> Entry {
        let r = f.table.get(arch).unwrap();
        Entry {
            name: r.entry_name(),
            enabled,
            interpreter: interpreter.into(),
            flags: Flags::FIX_BINARY,
            matcher: crate::binfmt::Matcher::Magic {
                offset: 0,
                magic: r.magic.clone(),
                mask: Some(r.mask.clone()),
            },
        }
    }

    #[test]
    fn plan_decides_each_case() {
        let f = fixture();
        let emu = |a: &str| f.emulator(a);
        let mut claimant = entry_for(&f, "riscv64", "/opt/other/qemu", true);
        claimant.name = "rosetta".into();
        let fs = MemoryBinfmt::new(vec![
            entry_for(&f, FOREIGN, &emu(FOREIGN), true),
            entry_for(&f, "s390x", &emu("s390x"), false),
            claimant,
        ]);
        let host_arch = f.host.arch.clone().unwrap();
        let p = plan(&f, &fs, &[FOREIGN, "s390x", "riscv64", &host_arch], false).unwrap();
        assert_eq!(
            actions(&p),
            [
                Action::Unchanged,
                Action::Enabled,
                Action::SkippedForeign,
                Action::SkippedNative
            ]
        );
        let p = plan(&f, &fs, &["riscv64"], true).unwrap();
        assert_eq!(actions(&p), [Action::Registered]);
        assert!(p.steps[0].note.as_deref().unwrap().contains("rosetta"));
    }

    #[test]
    fn conflicting_entry_is_an_error_without_force() {
        let f = fixture();
        let fs = MemoryBinfmt::new(vec![entry_for(&f, FOREIGN, "/opt/q/qemu-foreign", true)]);
        let e = plan(&f, &fs, &[FOREIGN], false).unwrap_err().to_string();
        assert!(
            e.contains(&format!("qemu-{FOREIGN} exists and differs"))
                && e.contains("/opt/q/qemu-foreign"),
            "{e}"
        );
        let p = plan(&f, &fs, &[FOREIGN], true).unwrap();
        assert_eq!(actions(&p), [Action::Replaced]);
    }

    #[test]
    fn equivalent_entries_are_unchanged_and_conflicts_are_all_listed() {
        let f = fixture();
        let emu = |a: &str| f.emulator(a);
        // Debian's way: a symlink to the same emulator, flags POF.
        let link = f.emu_dir.join(format!("{FOREIGN}-binfmt-P"));
        std::os::unix::fs::symlink(emu(FOREIGN), &link).unwrap();
        let mut debian = entry_for(&f, FOREIGN, link.to_str().unwrap(), true);
        debian.flags = Flags::parse("POF").unwrap();
        // Registered from a container: the path is not visible here.
        let invisible = entry_for(&f, "s390x", "/qus/bin/qemu-s390x-static", true);
        // Without F: a conflict whatever its interpreter.
        let mut no_f = entry_for(&f, "riscv64", &emu("riscv64"), true);
        no_f.flags = Flags::parse("P").unwrap();
        let fs = MemoryBinfmt::new(vec![debian, invisible, no_f]);
        let asked = std::sync::Mutex::new(Vec::new());
        let works = |pairs: &[(&Rule, &Entry)]| {
            asked
                .lock()
                .unwrap()
                .extend(pairs.iter().map(|(r, _)| r.name.clone()));
            pairs.iter().map(|_| Ok(())).collect()
        };
        let archs = [FOREIGN, "s390x", "riscv64"];
        // Named: every conflict at once, nothing planned.
        let e = plan_proven(&f, &fs, &opts(&f, &archs, false), &works).unwrap_err();
        let PlanError::Conflicts(c) = &e else {
            panic!("{e}")
        };
        assert_eq!(c.len(), 1, "{e}");
        assert!(e.to_string().contains("without F"), "{e}");
        // Only the invisible interpreter needed a test run.
        assert_eq!(*asked.lock().unwrap(), ["s390x"]);
        // When its test run fails too, both conflicts are listed in one error.
        let fails_all = |pairs: &[(&Rule, &Entry)]| {
            pairs
                .iter()
                .map(|_| Err("exec format error".into()))
                .collect()
        };
        let e = plan_proven(&f, &fs, &opts(&f, &archs, false), &fails_all).unwrap_err();
        let PlanError::Conflicts(c) = &e else {
            panic!("{e}")
        };
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["qemu-s390x", "qemu-riscv64"], "{e}");
        assert!(
            e.hint()
                .unwrap()
                .contains("archctl enable --force s390x riscv64"),
            "{:?}",
            e.hint()
        );
        // --all style: the conflict is skipped, the others are served.
        let mut o = opts(&f, &archs, false);
        o.skip_conflicts = true;
        let p = plan_proven(&f, &fs, &o, &works).unwrap();
        assert_eq!(
            actions(&p),
            [
                Action::Unchanged,
                Action::Unchanged,
                Action::SkippedConflict
            ]
        );
        let why = p.steps[0].equivalent().unwrap();
        assert!(
            why.contains(&format!("-> {}", emu(FOREIGN))) && why.contains("flags POF"),
            "{why}"
        );
        assert_eq!(
            p.steps[0].interpreter_and_flags().unwrap().0,
            link.to_str().unwrap()
        );
        assert!(p.steps[1].equivalent().unwrap().contains("not visible"));
        assert!(p.steps[2].unserved(true) && !p.steps[0].unserved(true));
        // A failed test run makes the invisible one a conflict too, saying why.
        let fails = |pairs: &[(&Rule, &Entry)]| {
            pairs
                .iter()
                .map(|_| Err("exec format error".into()))
                .collect()
        };
        let p = plan_proven(&f, &fs, &o, &fails).unwrap();
        assert_eq!(p.steps[1].action(), Action::SkippedConflict);
        assert!(
            p.steps[1]
                .note
                .as_deref()
                .unwrap()
                .contains("exec format error"),
            "{:?}",
            p.steps[1].note
        );
        // --force asks for archctl's own entries.
        let p = plan_proven(&f, &fs, &opts(&f, &archs, true), &works).unwrap();
        assert_eq!(actions(&p), [Action::Replaced; 3]);
    }

    #[test]
    fn failed_registration_rolls_back_the_whole_run() {
        let f = fixture();
        let fs = MemoryBinfmt::new(Vec::new());
        fs.state.lock().unwrap().fail_register = vec!["qemu-s390x".into()];
        let p = plan(&f, &fs, &[FOREIGN, "s390x"], false).unwrap();
        let err = apply(&p, &fs).unwrap_err();
        assert_eq!(err.name, "qemu-s390x");
        assert!(err.to_string().contains("rolled back"), "{err}");
        let s = fs.snapshot();
        assert!(s.entries.is_empty(), "{:?}", s.entries);
        assert_eq!(s.log.len(), 3, "{:?}", s.log);
        assert!(s.log[0].starts_with(&format!("register :qemu-{FOREIGN}:")));
        assert!(s.log[1].starts_with("register :qemu-s390x:"));
        assert_eq!(s.log[2], format!("remove qemu-{FOREIGN}"));
    }

    #[test]
    fn failed_replacement_restores_the_previous_entry() {
        let f = fixture();
        let old = entry_for(&f, FOREIGN, "/opt/q/qemu-foreign", true);
        let fs = MemoryBinfmt::new(vec![old.clone()]);
        let p = plan(&f, &fs, &[FOREIGN], true).unwrap();
        let new_interp = p.steps[0].registration().unwrap().interpreter.clone();
        fs.state.lock().unwrap().fail_register = vec![new_interp.clone()];
        let err = apply(&p, &fs).unwrap_err();
        assert!(err.rollback.errors.is_empty(), "{err}");
        assert_eq!(fs.snapshot().entries, vec![old.clone()]);
        // And a successful replacement can be undone.
        fs.state.lock().unwrap().fail_register.clear();
        let applied = apply(&p, &fs).unwrap();
        assert_eq!(fs.snapshot().entries[0].interpreter, new_interp);
        assert!(applied.roll_back().errors.is_empty());
        assert_eq!(fs.snapshot().entries, vec![old]);
    }

    #[test]
    fn disable_plans_only_qemu_entries() {
        let f = fixture();
        let mut rosetta = entry_for(&f, "x86_64", "/mnt/rosetta", true);
        rosetta.name = "rosetta".into();
        let entries = vec![entry_for(&f, FOREIGN, "/q", true), rosetta];
        let p = plan_disable(f.table, &entries, &Selection::All).unwrap();
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].name, format!("qemu-{FOREIGN}"));
        let p = plan_disable(f.table, &entries, &Selection::Archs(vec!["s390x".into()])).unwrap();
        assert_eq!(actions(&p), [Action::NotRegistered]);
        let fs = MemoryBinfmt::new(entries.clone());
        let p = plan_disable(f.table, &entries, &Selection::Archs(vec![FOREIGN.into()])).unwrap();
        let applied = apply(&p, &fs).unwrap();
        assert_eq!(fs.snapshot().entries.len(), 1);
        applied.roll_back();
        assert_eq!(fs.snapshot().entries.len(), 2);
    }

    #[test]
    fn a_dropped_guard_rolls_back_and_a_kept_one_does_not() {
        let f = fixture();
        let fs = MemoryBinfmt::new(Vec::new());
        let p = plan(&f, &fs, &[FOREIGN, "s390x"], false).unwrap();
        drop(apply(&p, &fs).unwrap());
        assert!(fs.snapshot().entries.is_empty());
        apply(&p, &fs).unwrap().keep();
        assert_eq!(fs.snapshot().entries.len(), 2);
    }

    #[test]
    fn rollback_restores_entries_as_they_were() {
        let f = fixture();
        let old = entry_for(&f, "s390x", "/opt/q/qemu-s390x", false);
        let fs = MemoryBinfmt::new(vec![old.clone()]);
        let p = plan(&f, &fs, &["s390x"], true).unwrap();
        assert_eq!(actions(&p), [Action::Replaced]);
        let applied = apply(&p, &fs).unwrap();
        assert!(fs.snapshot().entries[0].enabled);
        assert!(applied.roll_back().errors.is_empty());
        // Back, and still disabled.
        assert_eq!(fs.snapshot().entries, vec![old]);
        // An entry matched by extension cannot be registered again: the rollback says so.
        let ext = Entry {
            name: "qemu-ext".into(),
            enabled: true,
            interpreter: "/usr/bin/x".into(),
            flags: Flags::default(),
            matcher: crate::binfmt::Matcher::Extension("x".into()),
        };
        let fs = MemoryBinfmt::new(vec![ext.clone()]);
        let p = plan_disable(f.table, &[ext], &Selection::All).unwrap();
        let rb = apply(&p, &fs).unwrap().roll_back();
        assert_eq!(rb.errors.len(), 1, "{rb}");
        assert!(rb.to_string().starts_with("rollback incomplete"), "{rb}");
    }
}
