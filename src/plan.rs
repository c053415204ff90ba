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
    binfmt::{BinfmtError, BinfmtFs, Entry, Flags, Registration, handlers_for},
    emulator::{EmulatorError, Search},
    host::{Host, Native},
};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--emulator names one file, but {0} architectures were given")]
    EmulatorForMany(usize),
    #[error("entry {name} exists and differs: {differences}")]
    Conflict { name: String, differences: String },
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
            PlanError::Conflict { .. } => Some("add --force to replace it".into()),
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
            Outcome::Skip(Skip::Unchanged(_)) => Action::Unchanged,
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
            Outcome::Change(Change::Remove(_))
            | Outcome::Skip(Skip::Native | Skip::Missing | Skip::NotRegistered) => None,
        }
    }

    /// Interpreter and flags for reports: what is registered, else what is removed.
    pub fn interpreter_and_flags(&self) -> Option<(&str, Flags)> {
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

/// Compute what `enable` would do. Validates everything (emulators, conflicts) before
/// anything is written: an error here leaves the system untouched.
pub fn plan_enable(
    table: &Table,
    host: &Host,
    native: &Native,
    entries: &[Entry],
    opts: &EnableOptions,
) -> Result<Plan, PlanError> {
    let mut warnings = Vec::new();
    let all = matches!(opts.selection, Selection::All);
    let lenient = all || opts.skip_missing;
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
    let mut steps = Vec::with_capacity(rules.len());
    for rule in rules {
        let name = rule.entry_name();
        let step = |outcome, note| Step {
            arch: rule.name.clone(),
            name: name.clone(),
            outcome,
            note,
        };
        if host.is_host(rule) || native.contains(&rule.name) {
            let note = format!("{} runs natively on this host", rule.name);
            steps.push(step(Outcome::Skip(Skip::Native), Some(note)));
            continue;
        }
        let reg = match opts.search.registration(rule, table, native, opts.flags) {
            Ok(r) => r,
            Err(e) if lenient => {
                steps.push(step(Outcome::Skip(Skip::Missing), Some(e.to_string())));
                continue;
            }
            Err(source) => {
                return Err(PlanError::Emulator {
                    arch: rule.name.clone(),
                    source,
                });
            }
        };
        reg.validate().map_err(|source| PlanError::Entry {
            arch: rule.name.clone(),
            source,
        })?;
        let foreign: Vec<&Entry> = handlers_for(entries, rule)
            .filter(|e| e.name != name)
            .collect();
        let existing = entries.iter().find(|e| e.name == name);
        if !foreign.is_empty() && !opts.force {
            let names: Vec<&str> = foreign.iter().map(|e| e.name.as_str()).collect();
            let note = format!(
                "{} already handled by {} ({}); --force registers {name} in front of it",
                rule.name,
                names.join(", "),
                foreign[0].interpreter
            );
            steps.push(step(Outcome::Skip(Skip::Foreign(reg)), Some(note)));
            continue;
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
        match existing {
            None => steps.push(step(Outcome::Change(Change::Register(reg)), foreign_note)),
            Some(e) if reg.same_as(e) && e.enabled => {
                steps.push(step(Outcome::Skip(Skip::Unchanged(reg)), None))
            }
            Some(e) if reg.same_as(e) => {
                steps.push(step(Outcome::Change(Change::Enable(reg)), None))
            }
            Some(e) if opts.force => {
                let note = format!("was: {}", reg.differences(e).join(", "));
                let change = Change::Replace {
                    old: e.clone(),
                    new: reg,
                };
                steps.push(step(Outcome::Change(change), Some(note)))
            }
            Some(e) => {
                let mut d = reg.differences(e);
                if !e.enabled {
                    d.push("disabled".into());
                }
                if opts.skip_conflicts {
                    let note = format!(
                        "{name} exists and differs: {}; set force = true to replace it",
                        d.join(", ")
                    );
                    steps.push(step(Outcome::Skip(Skip::Conflict(reg)), Some(note)));
                    continue;
                }
                return Err(PlanError::Conflict {
                    name,
                    differences: d.join(", "),
                });
            }
        }
    }
    Ok(Plan { steps, warnings })
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

/// One undoable change.
#[derive(Debug, Clone)]
enum Undo {
    Remove(String),
    /// Register a removed or replaced entry again, in the state it was in.
    Restore {
        reg: Registration,
        enabled: bool,
    },
    Disable(String),
    /// A removed entry archctl cannot register again (matched by extension): the
    /// rollback reports it instead of claiming success.
    Lost(String),
}

impl Undo {
    fn restore(e: &Entry) -> Undo {
        match e.to_registration() {
            Some(reg) => Undo::Restore {
                reg,
                enabled: e.enabled,
            },
            None => Undo::Lost(e.name.clone()),
        }
    }
}

/// The changes a run made, and how to take them back. Dropped without [`Applied::keep`]
/// (an early return, an error), it rolls them back; every rollback, whether after a
/// failed write, a failed verification or a signal, goes through [`Applied::roll_back`].
#[must_use = "dropping it rolls the changes back; call keep() to keep them"]
pub struct Applied<'a> {
    fs: &'a dyn BinfmtFs,
    undo: Vec<Undo>,
}

impl fmt::Debug for Applied<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Applied").field("undo", &self.undo).finish()
    }
}

impl Applied<'_> {
    /// The run succeeded: keep its changes.
    pub fn keep(mut self) {
        self.undo.clear();
    }

    /// Undo the changes, newest first.
    pub fn roll_back(mut self) -> RolledBack {
        self.undo_all()
    }

    fn undo_all(&mut self) -> RolledBack {
        let mut errors = Vec::new();
        for u in std::mem::take(&mut self.undo).iter().rev() {
            let r = match u {
                Undo::Remove(name) => self.fs.remove(name).map(|_| ()),
                Undo::Restore { reg, enabled } => self.fs.register(reg).and_then(|()| {
                    if *enabled {
                        Ok(())
                    } else {
                        self.fs.set_enabled(&reg.name, false)
                    }
                }),
                Undo::Disable(name) => self.fs.set_enabled(name, false),
                Undo::Lost(name) => Err(BinfmtError::CannotRestore { name: name.clone() }),
            };
            if let Err(e) = r {
                errors.push(e);
            }
        }
        RolledBack { errors }
    }

    fn apply_change(&mut self, change: &Change) -> Result<(), BinfmtError> {
        let fs = self.fs;
        match change {
            Change::Register(r) => {
                fs.register(r)?;
                self.undo.push(Undo::Remove(r.name.clone()));
            }
            Change::Replace { old, new } => {
                fs.remove(&old.name)?;
                self.undo.push(Undo::restore(old));
                fs.register(new)?;
                self.undo.push(Undo::Remove(new.name.clone()));
            }
            Change::Enable(r) => {
                fs.set_enabled(&r.name, true)?;
                self.undo.push(Undo::Disable(r.name.clone()));
            }
            Change::Remove(e) => {
                if fs.remove(&e.name)? {
                    self.undo.push(Undo::restore(e));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Applied<'_> {
    fn drop(&mut self) {
        if !self.undo.is_empty() {
            self.undo_all();
        }
    }
}

/// The result of a rollback: what could not be undone, if anything.
#[derive(Debug)]
pub struct RolledBack {
    pub errors: Vec<BinfmtError>,
}

impl fmt::Display for RolledBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errors.is_empty() {
            return f.write_str("changes of this run were rolled back");
        }
        f.write_str("rollback incomplete: ")?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Execute a plan's changes in order. On error, or a signal at any point of it,
/// everything done so far is rolled back before the error is returned.
pub fn apply<'a>(plan: &Plan, fs: &'a dyn BinfmtFs) -> Result<Applied<'a>, ApplyError> {
    let mut applied = Applied {
        fs,
        undo: Vec::new(),
    };
    for s in &plan.steps {
        let Some(change) = s.change() else {
            continue;
        };
        let step = if crate::interrupt::interrupted() {
            Err(BinfmtError::Interrupted)
        } else {
            applied.apply_change(change)
        };
        if let Err(source) = step {
            return Err(ApplyError {
                name: s.name.clone(),
                source,
                rollback: applied.roll_back(),
            });
        }
    }
    // A signal during the last write: the run is not complete either.
    if crate::interrupt::interrupted()
        && let Some(last) = plan.steps.iter().rev().find(|s| s.change().is_some())
    {
        return Err(ApplyError {
            name: last.name.clone(),
            source: BinfmtError::Interrupted,
            rollback: applied.roll_back(),
        });
    }
    Ok(applied)
}

/// A failed apply, after rollback.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {source} ({rollback})")]
pub struct ApplyError {
    pub name: String,
    #[source]
    pub source: BinfmtError,
    pub rollback: RolledBack,
}

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
    use crate::binfmt::MemoryBinfmt;

    struct Fixture {
        _dir: tempfile::TempDir,
        table: &'static Table,
        host: Host,
        native: Native,
        emu_dir: PathBuf,
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
        }
    }

    fn plan(
        f: &Fixture,
        fs: &MemoryBinfmt,
        archs: &[&str],
        force: bool,
    ) -> Result<Plan, PlanError> {
        let entries = fs.entries().unwrap();
        plan_enable(
            f.table,
            &f.host,
            &f.native,
            &entries,
            &opts(f, archs, force),
        )
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
        let emu = |a: &str| {
            f.emu_dir
                .join(format!("qemu-{a}-static"))
                .display()
                .to_string()
        };
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
