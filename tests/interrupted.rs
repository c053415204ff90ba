//! A signal at every point of `disable --all` (issue #11, class 7): after each write to
//! the kernel's table in turn, a real SIGTERM is raised while archctl's handlers are in
//! place. The run must either finish, or give back exactly what it removed (each entry
//! in its enabled or disabled state), or name what it could not give back; and it
//! never says "rolled back" when it did not.
//!
//! Real kernel: the process moves itself into a private binfmt_misc instance (Linux
//! 6.7+), which only a single-threaded process can, hence `harness = false`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use archctl::{
    arch::Table,
    binfmt::{BinfmtError, BinfmtFs, Entry, Flags, KernelBinfmt, Lock, Registration},
    interrupt, ns,
    plan::{self, Selection},
};
use nix::sys::signal::{Signal, raise};

/// The kernel's table, raising SIGTERM right after write number `at` (1-based).
struct SignalAfter<'a> {
    inner: &'a KernelBinfmt,
    at: usize,
    writes: AtomicUsize,
}

impl SignalAfter<'_> {
    fn wrote<T>(&self, r: Result<T, BinfmtError>) -> Result<T, BinfmtError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.at {
            raise(Signal::SIGTERM).unwrap();
        }
        r
    }
}

impl BinfmtFs for SignalAfter<'_> {
    fn dir(&self) -> &Path {
        self.inner.dir()
    }
    fn is_mounted(&self) -> Result<bool, BinfmtError> {
        self.inner.is_mounted()
    }
    fn mount(&self) -> Result<(), BinfmtError> {
        self.inner.mount()
    }
    fn unmount(&self) -> Result<(), BinfmtError> {
        self.inner.unmount()
    }
    fn status_enabled(&self) -> Result<bool, BinfmtError> {
        self.inner.status_enabled()
    }
    fn entries(&self) -> Result<Vec<Entry>, BinfmtError> {
        self.inner.entries()
    }
    fn entry(&self, name: &str) -> Result<Option<Entry>, BinfmtError> {
        self.inner.entry(name)
    }
    fn register(&self, reg: &Registration) -> Result<(), BinfmtError> {
        self.wrote(self.inner.register(reg))
    }
    fn remove(&self, name: &str) -> Result<bool, BinfmtError> {
        self.wrote(self.inner.remove(name))
    }
    fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), BinfmtError> {
        self.wrote(self.inner.set_enabled(name, enabled))
    }
    fn lock(&self) -> Result<Lock, BinfmtError> {
        self.inner.lock()
    }
}

/// What `cat` of every entry shows, sorted by name.
fn table(fs: &KernelBinfmt) -> Vec<Entry> {
    fs.entries().unwrap()
}

fn main() {
    if !ns::kernel_at_least(&ns::kernel_release(), 6, 7) {
        let why = format!(
            "skipped: private binfmt_misc instances need Linux 6.7+, this is {}",
            ns::kernel_release()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{why} (CI must run it)");
        }
        println!("{why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    ns::enter_private_binfmt(dir.path()).expect("a private binfmt_misc instance");
    let kernel = KernelBinfmt::new(dir.path());
    let t = Table::builtin();

    // What a user's machine has: archctl's entries (some disabled), one matched by
    // extension under a qemu- name (which nobody can register again from its file),
    // and someone else's entry that disable must not touch.
    let set_up = || {
        for (i, r) in t.rules().iter().enumerate() {
            let reg = r.registration(
                format!("/usr/bin/qemu-{}-static", r.emulator),
                Flags::parse("F").unwrap(),
            );
            let reg = Registration {
                flags: Flags::default(),
                ..reg
            };
            kernel.register(&reg).unwrap();
            if i % 4 == 1 {
                kernel.set_enabled(&reg.name, false).unwrap();
            }
        }
        std::fs::write(dir.path().join("register"), ":qemu-ext:E::qext::/bin/true:").unwrap();
        std::fs::write(
            dir.path().join("register"),
            ":rosetta:E::rosetta::/bin/true:",
        )
        .unwrap();
    };
    set_up();
    let before = table(&kernel);
    let plan = plan::plan_disable(t, &before, &Selection::All).unwrap();
    let removals = plan.steps.iter().filter(|s| s.change().is_some()).count();
    assert!(removals > 20, "{removals} removals planned");
    let ext_at = plan
        .steps
        .iter()
        .filter(|s| s.change().is_some())
        .position(|s| s.name == "qemu-ext")
        .expect("qemu-ext is removed too")
        + 1;

    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    for at in 1..=removals + 1 {
        let fs = SignalAfter {
            inner: &kernel,
            at,
            writes: AtomicUsize::new(0),
        };
        let signals = interrupt::Guard::install();
        let result = plan::apply(&plan, &fs).map(|a| a.keep());
        drop(signals);
        let after = table(&kernel);
        let outcome = match result {
            Ok(()) => {
                // The signal came after the last write: everything archctl's is gone.
                assert_eq!(at, removals + 1, "signal after write {at} went unnoticed");
                assert_eq!(after.len(), 1, "{after:?}");
                assert_eq!(after[0].name, "rosetta");
                "completed"
            }
            Err(e) if at < ext_at => {
                // Before qemu-ext was removed: all of it back, and it says how much.
                let msg = e.to_string();
                assert!(
                    msg.contains("interrupted by a signal"),
                    "after write {at}: {msg}"
                );
                assert_eq!(after, before, "after write {at}: {msg}");
                assert!(
                    msg.contains(&format!("rolled back the {at} change")),
                    "after write {at}, says it undid exactly {at}: {msg}"
                );
                "rolled back"
            }
            Err(e) => {
                // qemu-ext was removed: everything else is back, and the message names
                // it as what stays removed. It never claims a full rollback.
                let msg = e.to_string();
                assert!(
                    msg.contains("rollback incomplete"),
                    "after write {at}: {msg}"
                );
                assert!(
                    msg.contains("entry qemu-ext (matched by extension) stays removed"),
                    "{msg}"
                );
                assert!(
                    msg.contains(&format!("({} changes undone)", at - 1)),
                    "after write {at}: {msg}"
                );
                let mut expected = before.clone();
                expected.retain(|e| e.name != "qemu-ext");
                assert_eq!(after, expected, "after write {at}: {msg}");
                "reported what stays removed"
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
        interrupt::clear();
        // Back to the starting table for the next point.
        for e in table(&kernel) {
            kernel.remove(&e.name).unwrap();
        }
        set_up();
        assert_eq!(table(&kernel), before);
    }
    println!(
        "interrupted disable --all at each of {} points: {outcomes:?}",
        removals + 1
    );
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
}
