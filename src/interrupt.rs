//! Signals during a change: SIGINT, SIGTERM, SIGHUP and SIGQUIT are recorded instead of
//! killing archctl while it registers and verifies, so an interrupted run still rolls
//! back what it did (no half-registered state, also on Ctrl-C or a shutdown).

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

const SIGNALS: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

extern "C" fn record(_sig: libc::c_int) {
    // Async-signal-safe: one atomic store.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Has a signal arrived while a [`Guard`] was alive?
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Forget a recorded signal, for a process that has answered one and goes on (a test
/// that delivers real signals one after another).
pub fn clear() {
    INTERRUPTED.store(false, Ordering::SeqCst);
}

/// While alive, the signals above only set [`interrupted`]. Dropping it restores the
/// previous handlers. Child processes get default handlers back when they exec.
pub struct Guard {
    previous: Vec<(Signal, SigAction)>,
}

impl Guard {
    pub fn install() -> Guard {
        let new = SigAction::new(
            SigHandler::Handler(record),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let mut previous = Vec::with_capacity(SIGNALS.len());
        for sig in SIGNALS {
            // SAFETY: the handler only stores an atomic (async-signal-safe).
            if let Ok(old) = unsafe { sigaction(sig, &new) } {
                previous.push((sig, old));
            }
        }
        Guard { previous }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for (sig, old) in &self.previous {
            // SAFETY: restores a disposition obtained from sigaction above.
            let _ = unsafe { sigaction(*sig, old) };
        }
    }
}
