//! The signals rprof handles for itself, kept invisible to the program.
//!
//! rprof installs handlers for SIGPROF (sampling), the dump signal (snapshots), and SIGINT
//! and SIGTERM when they are at their default action (write the final files, then die by
//! the same signal so the exit status is unchanged). The interposed `sigaction`, `signal`
//! and its legacy variants (`bsd_signal`, `ssignal`, `sysv_signal`, `sigset`) report to
//! the program exactly what it would see without rprof (CPython installs
//! its KeyboardInterrupt handler only if it sees SIGINT at SIG_DFL), and a handler the
//! program installs always replaces ours. Setting SIG_DFL again brings ours back, since it
//! emulates the default action.
#![allow(unsafe_code)]

use crate::collector;
use crate::config::Config;
use crate::cpu;
use crate::interpose::real;
use crate::log::warning;
use crate::signal_safe::ErrnoGuard;
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

/// Whether rprof's own handler is what runs for `sig` now (not displaced by the
/// program's): a signal rprof sends itself may then be sent safely.
pub fn ours_installed(sig: i32) -> bool {
    with_managed(|table| table.iter().flatten().any(|m| m.sig == sig && !m.displaced))
}

pub fn is_managed(sig: i32) -> bool {
    with_managed(|table| table.iter().flatten().any(|m| m.sig == sig))
}

/// Runs `f` on the table of managed signals with every signal blocked on this thread, so
/// that a handler which itself calls sigaction or signal (the classic way to re-arm a
/// one-shot handler) cannot interrupt us here while the lock is held.
fn with_managed<R>(f: impl FnOnce(&mut [Option<Managed>; 4]) -> R) -> R {
    // SAFETY: sigset_t is plain data; pthread_sigmask only changes this thread's mask,
    // which is restored before returning.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut saved: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
        let r = f(&mut MANAGED.lock());
        libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut());
        r
    }
}

/// The interposed sigaction: the program's view of a managed signal, and its changes.
pub fn program_sigaction(sig: i32, act: *const libc::sigaction, oact: *mut libc::sigaction) -> i32 {
    let outcome = with_managed(|table| {
        let m = table.iter_mut().flatten().find(|m| m.sig == sig)?;
        let view = m.program.unwrap_or(m.initial);
        let mut displaced_now = false;
        if !act.is_null() {
            // SAFETY: the program passed a readable sigaction.
            let new = unsafe { *act };
            let handler = new.sa_sigaction;
            let fatal = sig == libc::SIGINT || sig == libc::SIGTERM;
            let program_runs_its_own =
                handler != libc::SIG_DFL && (handler != libc::SIG_IGN || fatal);
            if program_runs_its_own {
                if sig == libc::SIGPROF && !m.displaced {
                    // Timers go before the program's handler comes: a signal of ours that
                    // is generated later would reach it.
                    cpu::stop();
                }
                let rc = real::sigaction(sig, act, std::ptr::null_mut());
                if rc != 0 {
                    return Some(Err(rc));
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
        Some(Ok((view, displaced_now)))
    });
    let (view, displaced_now) = match outcome {
        None => return real::sigaction(sig, act, oact),
        Some(Err(rc)) => return rc,
        Some(Ok(v)) => v,
    };
    if !oact.is_null() {
        // SAFETY: the program passed a writable sigaction.
        unsafe { *oact = view };
    }
    if displaced_now {
        if sig == libc::SIGPROF {
            warning!("the program installed its own SIGPROF handler; CPU profiling stops here (samples so far are kept)");
        } else {
            warning!("the program installed its own handler for signal {sig}; it no longer writes rprof snapshots");
        }
    }
    0
}

/// The interposed signal() (and bsd_signal, ssignal): glibc's BSD semantics (SA_RESTART,
/// the signal blocked in its handler) through `program_sigaction`.
pub fn program_signal(sig: i32, handler: libc::sighandler_t) -> libc::sighandler_t {
    set_handler(sig, handler, libc::SA_RESTART, true)
}

/// The interposed sysv_signal(): one-shot, not blocked in its handler, no restart.
pub fn program_sysv_signal(sig: i32, handler: libc::sighandler_t) -> libc::sighandler_t {
    set_handler(sig, handler, libc::SA_RESETHAND | libc::SA_NODEFER, false)
}

/// glibc's SIG_HOLD, sigset()'s "block the signal" disposition.
const SIG_HOLD: libc::sighandler_t = 2;

/// The interposed sigset(), as glibc's: SIG_HOLD blocks the signal; any other disposition
/// is installed (nothing blocked in the handler, no flags) and unblocks it. Returns
/// SIG_HOLD if the signal was blocked, else the previous disposition.
pub fn program_sigset(sig: i32, disposition: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: sigset_t and sigaction are plain data; the libc calls fill our locals.
    unsafe {
        let mut one: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut one);
        libc::sigaddset(&mut one, sig);
        let mut mask: libc::sigset_t = std::mem::zeroed();
        if libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) != 0 {
            return libc::SIG_ERR;
        }
        let was_blocked = libc::sigismember(&mask, sig) == 1;
        let previous = if disposition == SIG_HOLD {
            let mut old: libc::sigaction = std::mem::zeroed();
            if program_sigaction(sig, std::ptr::null(), &mut old) != 0
                || libc::pthread_sigmask(libc::SIG_BLOCK, &one, std::ptr::null_mut()) != 0
            {
                return libc::SIG_ERR;
            }
            old.sa_sigaction
        } else {
            let previous = set_handler(sig, disposition, 0, false);
            if previous == libc::SIG_ERR
                || libc::pthread_sigmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut()) != 0
            {
                return libc::SIG_ERR;
            }
            previous
        };
        if was_blocked {
            SIG_HOLD
        } else {
            previous
        }
    }
}

/// Sets a managed signal's handler as the program asked, with `flags`, and `sig` itself
/// blocked in the handler if `block_self`; returns the previous handler as the program
/// saw it.
fn set_handler(
    sig: i32,
    handler: libc::sighandler_t,
    flags: i32,
    block_self: bool,
) -> libc::sighandler_t {
    // SAFETY: sigaction and sigset_t are plain data; the libc calls fill our locals.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler;
        libc::sigemptyset(&mut act.sa_mask);
        if block_self {
            libc::sigaddset(&mut act.sa_mask, sig);
        }
        act.sa_flags = flags;
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

/// Async-signal-safe. SIGINT/SIGTERM at their default action: write the final files, then
/// die of the same signal (or, when the thread was inside rprof, as soon as it leaves).
extern "C" fn on_fatal_signal(sig: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let _errno = ErrnoGuard::new();
    collector::on_fatal_signal(sig, collector::FATAL_DUMP_TIMEOUT_NS);
}
