//! The signals rprof handles for itself, kept invisible to the program.
//!
//! rprof installs handlers for SIGPROF (sampling), the dump signal (snapshots), and SIGINT
//! and SIGTERM when they are at their default action (write the final files, then die by
//! the same signal so the exit status is unchanged). The interposed `sigaction` and
//! `signal` report to the program exactly what it would see without rprof (CPython installs
//! its KeyboardInterrupt handler only if it sees SIGINT at SIG_DFL), and a handler the
//! program installs always replaces ours. Setting SIG_DFL again brings ours back, since it
//! emulates the default action.
#![allow(unsafe_code)]

use crate::collector;
use crate::config::Config;
use crate::cpu;
use crate::interpose::real;
use crate::log::warning;
use crate::signal_safe::{sys, ErrnoGuard};
use crate::sync::Lock;

type Handler = extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void);

/// One signal we manage.
#[derive(Clone, Copy)]
pub struct Managed {
    sig: i32,
    ours: Handler,
    /// What was installed before rprof (SIG_DFL, or SIG_IGN inherited across exec).
    initial: libc::sigaction,
    /// The last action the program set, if it ever set one.
    program: Option<libc::sigaction>,
    /// True while the program's own action is installed instead of ours.
    displaced: bool,
}

/// Guards the table of managed signals; also taken by fork's prepare handler.
pub static MANAGED: Lock<[Option<Managed>; 4]> = Lock::new([None; 4]);

/// How long a fatal SIGINT/SIGTERM waits for the final files before dying anyway.
const FATAL_DUMP_TIMEOUT_NS: u64 = 5_000_000_000;

fn install_real(sig: i32, handler: Handler) -> bool {
    // SAFETY: sigaction is plain data; zero is a valid start.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler as usize;
    act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    real::sigaction(sig, &act, std::ptr::null_mut()) == 0
}

fn current_real(sig: i32) -> Option<libc::sigaction> {
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    (real::sigaction(sig, std::ptr::null(), &mut old) == 0).then_some(old)
}

/// Installs our handlers at load.
pub fn install(cfg: &Config, cpu_on: bool) {
    let mut wanted: Vec<(i32, Handler, bool)> = Vec::new();
    if cpu_on {
        wanted.push((libc::SIGPROF, cpu::on_sigprof, false));
    }
    if let Some(sig) = cfg.dump_signal {
        wanted.push((sig, on_dump_signal, false));
    }
    wanted.push((libc::SIGINT, on_fatal_signal, true));
    wanted.push((libc::SIGTERM, on_fatal_signal, true));
    let mut table = MANAGED.lock();
    for (slot, (sig, handler, only_if_default)) in table.iter_mut().zip(wanted) {
        let Some(initial) = current_real(sig) else {
            continue;
        };
        if only_if_default && initial.sa_sigaction != libc::SIG_DFL {
            continue; // ignored (nohup, a shell's background job): leave it so
        }
        if install_real(sig, handler) {
            *slot = Some(Managed {
                sig,
                ours: handler,
                initial,
                program: None,
                displaced: false,
            });
        }
    }
}

pub fn is_managed(sig: i32) -> bool {
    MANAGED.lock().iter().flatten().any(|m| m.sig == sig)
}

/// The interposed sigaction: the program's view of a managed signal, and its changes.
pub fn program_sigaction(sig: i32, act: *const libc::sigaction, oact: *mut libc::sigaction) -> i32 {
    let mut table = MANAGED.lock();
    let Some(m) = table.iter_mut().flatten().find(|m| m.sig == sig) else {
        drop(table);
        return real::sigaction(sig, act, oact);
    };
    let view = m.program.unwrap_or(m.initial);
    let mut displaced_now = false;
    if !act.is_null() {
        // SAFETY: the program passed a readable sigaction.
        let new = unsafe { *act };
        let handler = new.sa_sigaction;
        let fatal = sig == libc::SIGINT || sig == libc::SIGTERM;
        let program_runs_its_own = handler != libc::SIG_DFL && (handler != libc::SIG_IGN || fatal);
        if program_runs_its_own {
            let rc = real::sigaction(sig, act, std::ptr::null_mut());
            if rc != 0 {
                return rc;
            }
            displaced_now = !m.displaced && !fatal;
            m.displaced = true;
        } else if m.displaced {
            // Back to the default (or, for SIGPROF and the dump signal, to ignoring):
            // ours emulates both, invisibly.
            install_real(sig, m.ours);
            m.displaced = false;
        }
        m.program = Some(new);
    }
    drop(table);
    if !oact.is_null() {
        // SAFETY: the program passed a writable sigaction.
        unsafe { *oact = view };
    }
    if displaced_now {
        if sig == libc::SIGPROF {
            cpu::stop();
            warning!("the program installed its own SIGPROF handler; CPU profiling stops here (samples so far are kept)");
        } else {
            warning!("the program installed its own handler for signal {sig}; it no longer writes rprof snapshots");
        }
    }
    0
}

/// The interposed signal(): glibc's BSD semantics (SA_RESTART, the signal blocked in its
/// handler) through `program_sigaction`.
pub fn program_signal(sig: i32, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: sigaction and sigset_t are plain data; the libc calls fill our locals.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaddset(&mut act.sa_mask, sig);
        act.sa_flags = libc::SA_RESTART;
        let mut old: libc::sigaction = std::mem::zeroed();
        if program_sigaction(sig, &act, &mut old) != 0 {
            return libc::SIG_ERR;
        }
        old.sa_sigaction
    }
}

/// Async-signal-safe. The dump signal: only records the request.
extern "C" fn on_dump_signal(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let _errno = ErrnoGuard::new();
    collector::request_snapshot();
}

/// Async-signal-safe. SIGINT/SIGTERM at their default action: have the collector thread
/// write the final files (waiting a bounded time), then die of the same signal.
extern "C" fn on_fatal_signal(sig: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let _errno = ErrnoGuard::new();
    collector::request_final_dump_and_wait(FATAL_DUMP_TIMEOUT_NS);
    // SAFETY: plain data and async-signal-safe calls (sigaction, pthread_sigmask, tgkill).
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        real::sigaction(sig, &dfl, std::ptr::null_mut());
        sys::tgkill_self(sys::gettid(), sig);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}
