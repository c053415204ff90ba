//! Executing a plan: each [`Change`] written in order, with an undo log that the
//! [`Applied`] guard owns. A failed write, a failed verification and a signal all roll
//! back through [`Applied::roll_back`], with one message.

use std::fmt;

use super::{Change, Plan};
use crate::binfmt::{BinfmtError, BinfmtFs, Entry, Registration};

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
    /// The entry this undoes a change of.
    fn entry_name(&self) -> &str {
        match self {
            Undo::Remove(n) | Undo::Disable(n) | Undo::Lost(n) => n,
            Undo::Restore { reg, .. } => &reg.name,
        }
    }

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

    /// Undo the changes to these entries only (newest first); the others stay in the
    /// log, to be kept or rolled back later.
    pub fn roll_back_entries(&mut self, names: &[&str]) -> RolledBack {
        let (these, others): (Vec<Undo>, Vec<Undo>) = std::mem::take(&mut self.undo)
            .into_iter()
            .partition(|u| names.contains(&u.entry_name()));
        self.undo = these;
        let rolled = self.undo_all();
        self.undo = others;
        rolled
    }

    fn undo_all(&mut self) -> RolledBack {
        let mut errors = Vec::new();
        let mut undone = 0;
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
            match r {
                Ok(()) => undone += 1,
                Err(e) => errors.push(e),
            }
        }
        RolledBack { undone, errors }
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

/// The result of a rollback: how many changes were undone, and what could not be.
#[derive(Debug)]
pub struct RolledBack {
    pub undone: usize,
    pub errors: Vec<BinfmtError>,
}

impl fmt::Display for RolledBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.undone;
        let changes = if n == 1 { "change" } else { "changes" };
        if self.errors.is_empty() {
            return if n == 0 {
                f.write_str("nothing had been changed yet")
            } else {
                write!(f, "rolled back the {n} {changes} of this run")
            };
        }
        write!(f, "rollback incomplete ({n} {changes} undone): ")?;
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
