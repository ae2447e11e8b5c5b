//! The signals rprof handles for itself, kept invisible to the program.
//!
//! rprof installs handlers for the CPU timers' signal (SIGPROF, or `RPROF_CPU_SIGNAL`),
//! the dump signal (snapshots), and SIGINT, SIGTERM, SIGHUP and SIGABRT when they are at
//! their default action (write the final files, then die by the same signal so the exit
//! status is unchanged: `abort()` and a failed `assert` leave their heap profile). The interposed `sigaction`, `signal` and its legacy variants
//! (`bsd_signal`, `ssignal`, `sysv_signal`, `sigset`) report to the program exactly what it
//! would see without rprof (CPython installs its KeyboardInterrupt handler only if it sees
//! SIGINT at SIG_DFL), and a handler the program installs always replaces ours. Setting
//! SIG_DFL again brings ours back, since it emulates the default action.
//!
//! - The CPU signal: a program that installs its own handler for it (GNU sort does, for
//!   SIGPROF) gets it, and the timers move to a real-time signal the program has not
//!   touched (`move_cpu_signal`); the old one is then handled like SIGTERM. A CPU signal
//!   that is not a timer's (`kill -PROF`, the program's own `setitimer`) gets the action
//!   the program set: the default one ends the program, after its files are written.
//! - A handler installed with SA_RESETHAND (node's SIGINT and SIGTERM) is run by a
//!   trampoline that first puts rprof's back, as the kernel would put SIG_DFL back: a
//!   handler that then raises its signal again dies of it with the files written.
//! - In a Go program (`crate::symbols::go`), whose runtime installs a handler for every signal, the
//!   dump signal, SIGINT, SIGTERM and SIGHUP are shared instead (`on_shared`): rprof's
//!   handler calls Go's, and every handler rprof installs there has SA_ONSTACK.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::config::Config;
use crate::runtime::hooks::{self, FATAL_DUMP_TIMEOUT_NS};
use crate::runtime::log::{debug, warning};
use crate::signal_safe::cpu_signal;
use crate::signal_safe::lock::Lock;
use crate::signal_safe::real;
use crate::signal_safe::ErrnoGuard;

use crate::runtime::hooks::Handler;

/// What rprof does with a managed signal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// The CPU timers' signal.
    Cpu,
    /// The snapshot signal.
    Dump,
    /// A signal whose default action ends the program: files first.
    Fatal,
}

impl Role {
    fn handler(self) -> Handler {
        match self {
            Role::Cpu => hooks::get().cpu_handler,
            Role::Dump => on_dump_signal,
            Role::Fatal => on_fatal_signal,
        }
    }
}

/// One signal we manage.
#[derive(Clone, Copy)]
pub struct Managed {
    sig: i32,
    role: Role,
    /// What was installed before rprof (SIG_DFL, or SIG_IGN inherited across exec).
    initial: libc::sigaction,
    /// The last action the program set, if it ever set one.
    program: Option<libc::sigaction>,
    /// True while the program's own action is installed instead of ours.
    displaced: bool,
}

const SLOTS: usize = 8;

/// Guards the table of managed signals; also taken by fork's prepare handler.
pub static MANAGED: Lock<[Option<Managed>; SLOTS]> = Lock::new([None; SLOTS]);

fn bit(sig: i32) -> u64 {
    if (1..=64).contains(&sig) {
        1 << (sig - 1)
    } else {
        0
    }
}

/// Signals the program has given a disposition or waited for (candidates for the CPU
/// timers' signal are only among the others).
static TOUCHED: AtomicU64 = AtomicU64::new(0);
/// Managed signals the program sees as ignored (rprof's handler drops what is not its own).
static IGNORED_VIEW: AtomicU64 = AtomicU64::new(0);
/// Signals whose program handler had SA_RESETHAND and has run since: the table is told
/// at its next use (a handler cannot take its lock).
static RESET_PENDING: AtomicU64 = AtomicU64::new(0);
/// Signals whose program sa_mask held the CPU signal (left out of what is installed, put
/// back in what the program reads).
static MASKED_CPU: AtomicU64 = AtomicU64::new(0);
/// Per signal: the program's SA_RESETHAND handler run by `on_oneshot` (0: none), with
/// SA_SIGINFO's bit in ONESHOT_SIGINFO; and rprof's own handler to put back.
static ONESHOT: [AtomicUsize; 65] = [const { AtomicUsize::new(0) }; 65];
static ONESHOT_SIGINFO: AtomicU64 = AtomicU64::new(0);
static OURS: [AtomicUsize; 65] = [const { AtomicUsize::new(0) }; 65];

fn set_bit(word: &AtomicU64, sig: i32, on: bool) {
    if on {
        word.fetch_or(bit(sig), Ordering::AcqRel);
    } else {
        word.fetch_and(!bit(sig), Ordering::AcqRel);
    }
}

fn has_bit(word: &AtomicU64, sig: i32) -> bool {
    word.load(Ordering::Acquire) & bit(sig) != 0
}

fn install_real(sig: i32, handler: Handler) -> bool {
    // SAFETY: sigaction is plain data; zero is a valid start.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler as usize;
    act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | onstack(handler);
    if let Some(slot) = OURS.get(sig as usize) {
        slot.store(handler as usize, Ordering::Release);
    }
    real::sigaction(sig, &act, std::ptr::null_mut()) == 0
}

/// SA_ONSTACK for the CPU signal, whose handler is small and whose timers fire wherever a
/// thread happens to be: landing on a nearly full stack, it is delivered on the thread's
/// alternate stack (`alt_stack`: the program's own, or one rprof gave it). In a Go program
/// for every handler: Go requires it of every handler in its process. The handlers that
/// may write files (dump and fatal signals) need 256 KiB, more than a program's own
/// alternate stack holds (Rust's, Python's faulthandler's are a few pages), and run on the
/// thread's own stack, as the program's would.
fn onstack(handler: Handler) -> i32 {
    let cpu = handler as usize == hooks::get().cpu_handler as *const () as usize;
    if crate::symbols::go::present() || (cpu && crate::signal_safe::alt_stack::wanted()) {
        libc::SA_ONSTACK
    } else {
        0
    }
}

fn current_real(sig: i32) -> Option<libc::sigaction> {
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    (real::sigaction(sig, std::ptr::null(), &mut old) == 0).then_some(old)
}

/// Installs our handlers at load.
pub fn install(cfg: &Config, cpu_on: bool) {
    let mut wanted: Vec<(i32, Role)> = Vec::new();
    if cpu_on {
        wanted.push((cfg.cpu_signal, Role::Cpu));
    }
    if let Some(sig) = cfg.dump_signal {
        wanted.push((sig, Role::Dump));
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGABRT] {
        wanted.push((sig, Role::Fatal));
    }
    let mut table = MANAGED.lock();
    for (sig, role) in wanted {
        let Some(initial) = current_real(sig) else {
            continue;
        };
        if role == Role::Fatal && initial.sa_sigaction != libc::SIG_DFL {
            continue; // ignored (nohup, a shell's background job): leave it so
        }
        if role == Role::Cpu {
            cpu_signal::set(sig);
        }
        add(&mut table, sig, role, initial);
    }
}

/// Installs our handler for `sig` in a free slot of the table.
fn add(
    table: &mut [Option<Managed>; SLOTS],
    sig: i32,
    role: Role,
    initial: libc::sigaction,
) -> bool {
    let Some(slot) = table.iter_mut().find(|m| m.is_none()) else {
        return false;
    };
    if !install_real(sig, role.handler()) {
        return false;
    }
    set_bit(&IGNORED_VIEW, sig, initial.sa_sigaction == libc::SIG_IGN);
    *slot = Some(Managed {
        sig,
        role,
        initial,
        program: None,
        displaced: false,
    });
    true
}

/// Whether rprof's own handler is what runs for `sig` now (not displaced by the
/// program's): a signal rprof sends itself may then be sent safely.
pub fn ours_installed(sig: i32) -> bool {
    with_managed(|table| table.iter().flatten().any(|m| m.sig == sig && !m.displaced))
}

pub fn is_managed(sig: i32) -> bool {
    with_managed(|table| table.iter().flatten().any(|m| m.sig == sig))
}

/// Records that the program set a disposition for `sig` (any signal, managed or not).
pub fn touch(sig: i32) {
    set_bit(&TOUCHED, sig, true);
}

/// The program waits for the signals of `set` (sigwait, signalfd): they are its own. A
/// set holding almost every signal (sigfillset) says nothing about any one.
pub fn note_waited(set: &libc::sigset_t) {
    let rt: Vec<i32> = (libc::SIGRTMIN()..=libc::SIGRTMAX())
        // SAFETY: reads a valid sigset.
        .filter(|&s| unsafe { libc::sigismember(set, s) } == 1)
        .collect();
    if rt.len() < 8 {
        for s in rt {
            touch(s);
        }
    }
}

/// Runs `f` on the table of managed signals with every signal blocked on this thread, so
/// that a handler which itself calls sigaction or signal (the classic way to re-arm a
/// one-shot handler) cannot interrupt us here while the lock is held. One-shot handlers
/// that ran since the last use are folded in first.
fn with_managed<R>(f: impl FnOnce(&mut [Option<Managed>; SLOTS]) -> R) -> R {
    // SAFETY: sigset_t is plain data; pthread_sigmask only changes this thread's mask,
    // which is restored before returning.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut saved: libc::sigset_t = std::mem::zeroed();
        real::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
        let mut table = MANAGED.lock();
        fold_resets(&mut table);
        let r = f(&mut table);
        drop(table);
        real::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut());
        r
    }
}

/// The program's SA_RESETHAND handlers that have run: the kernel would have put SIG_DFL
/// back, so the program now sees SIG_DFL and rprof's handler is the one installed.
fn fold_resets(table: &mut [Option<Managed>; SLOTS]) {
    let pending = RESET_PENDING.swap(0, Ordering::AcqRel);
    if pending == 0 {
        return;
    }
    for m in table
        .iter_mut()
        .flatten()
        .filter(|m| pending & bit(m.sig) != 0)
    {
        m.displaced = false;
        if let Some(p) = m.program.as_mut() {
            p.sa_sigaction = libc::SIG_DFL;
            p.sa_flags &= !libc::SA_RESETHAND;
        }
        set_bit(&IGNORED_VIEW, m.sig, false);
    }
}

/// The CPU signal, leaving `sa_mask`: the program's handlers never block it.
fn without_cpu_signal(sig: i32, act: &libc::sigaction) -> libc::sigaction {
    let mut a = *act;
    let k = cpu_signal::in_use();
    // SAFETY: edits our copy of a valid sigset.
    let had = k != 0 && unsafe { libc::sigismember(&a.sa_mask, k) } == 1;
    if had {
        // SAFETY: as above.
        unsafe { libc::sigdelset(&mut a.sa_mask, k) };
    }
    set_bit(&MASKED_CPU, sig, had);
    a
}

/// Installs the program's action for a managed signal: as it is, or, with SA_RESETHAND,
/// through `on_oneshot`, which puts rprof's handler back before running the program's.
fn install_program_action(sig: i32, act: &libc::sigaction) -> i32 {
    let mut a = without_cpu_signal(sig, act);
    let slot = &ONESHOT[sig as usize];
    if a.sa_flags & libc::SA_RESETHAND != 0 {
        slot.store(a.sa_sigaction, Ordering::Release);
        set_bit(&ONESHOT_SIGINFO, sig, a.sa_flags & libc::SA_SIGINFO != 0);
        a.sa_sigaction = on_oneshot as *const () as usize;
        a.sa_flags = (a.sa_flags & !libc::SA_RESETHAND) | libc::SA_SIGINFO;
    } else {
        slot.store(0, Ordering::Release);
    }
    real::sigaction(sig, &a, std::ptr::null_mut())
}

/// Whether the dump signal, SIGINT, SIGTERM and SIGHUP stay rprof's too when the program
/// installs `act` for them: in a Go program, whose runtime installs a handler for every
/// signal at start. Go's handler then runs as it would alone: for a signal the program
/// did not ask for (os/signal), it does nothing (the dump signal) or ends the program
/// (SIGINT, SIGTERM, SIGHUP: it puts SIG_DFL back and raises the signal again). rprof
/// writes a snapshot on the dump signal, and the final files on a fatal one before Go's
/// handler runs: a program that caught it itself may return from main at once, and one
/// that did not dies with them written (see `on_shared`).
fn shares_signal(act: &libc::sigaction) -> bool {
    crate::symbols::go::present()
        && act.sa_sigaction != libc::SIG_IGN
        && act.sa_flags & libc::SA_RESETHAND == 0
}

/// Per signal: the program's handler that `on_shared` calls (0: none), with SA_SIGINFO's
/// bit in SHARED_SIGINFO.
static SHARED: [AtomicUsize; 65] = [const { AtomicUsize::new(0) }; 65];
static SHARED_SIGINFO: AtomicU64 = AtomicU64::new(0);
/// Shared signals that end the program unless it catches them (not the dump signal).
static SHARED_FATAL: AtomicU64 = AtomicU64::new(0);

/// Installs `on_shared` for `sig` with the program's flags and mask (Go's: SA_ONSTACK
/// among them), so that both the program and rprof see each signal.
fn install_shared(sig: i32, act: &libc::sigaction, fatal: bool) -> i32 {
    let mut a = without_cpu_signal(sig, act);
    set_bit(&SHARED_FATAL, sig, fatal);
    SHARED[sig as usize].store(a.sa_sigaction, Ordering::Release);
    set_bit(&SHARED_SIGINFO, sig, a.sa_flags & libc::SA_SIGINFO != 0);
    ONESHOT[sig as usize].store(0, Ordering::Release);
    a.sa_sigaction = on_shared as *const () as usize;
    a.sa_flags |= libc::SA_SIGINFO | libc::SA_ONSTACK;
    real::sigaction(sig, &a, std::ptr::null_mut())
}

/// The program took the CPU signal `old` for its own handler: the timers move to a
/// real-time signal it has not touched, and `old` is handled as a fatal signal. False if
/// none is free (CPU profiling stops).
fn move_cpu_signal(table: &mut [Option<Managed>; SLOTS], old: i32) -> bool {
    let taken = TOUCHED.load(Ordering::Acquire);
    let free = (libc::SIGRTMIN()..=libc::SIGRTMAX()).rev().find(|&s| {
        taken & bit(s) == 0
            && !table.iter().flatten().any(|m| m.sig == s)
            && current_real(s).is_some_and(|a| a.sa_sigaction == libc::SIG_DFL)
    });
    let Some(new) = free else {
        return false;
    };
    let Some(initial) = current_real(new) else {
        return false;
    };
    if !add(table, new, Role::Cpu, initial) {
        return false;
    }
    if !(hooks::get().cpu_move_to)(new) {
        // Undo: the new slot goes, its default action comes back.
        if let Some(slot) = table.iter_mut().find(|m| m.is_some_and(|m| m.sig == new)) {
            *slot = None;
        }
        real::sigaction(new, &initial, std::ptr::null_mut());
        return false;
    }
    debug!("the program took signal {old}; CPU timers now use signal {new}");
    true
}

/// The table's entry for `sig`, if rprof manages it.
fn managed(table: &mut [Option<Managed>; SLOTS], sig: i32) -> Option<&mut Managed> {
    table.iter_mut().flatten().find(|m| m.sig == sig)
}

/// The interposed sigaction: the program's view of a managed signal, and its changes.
pub fn program_sigaction(sig: i32, act: *const libc::sigaction, oact: *mut libc::sigaction) -> i32 {
    if !act.is_null() {
        touch(sig);
    }
    let mut cpu_lost = false;
    let outcome = with_managed(|table| {
        let m = managed(table, sig)?;
        let view = m.program.unwrap_or(m.initial);
        let is_dump = m.role == Role::Dump;
        let shareable = is_dump
            || (m.role == Role::Fatal
                && matches!(sig, libc::SIGINT | libc::SIGTERM | libc::SIGHUP));
        let mut dump_displaced = false;
        if !act.is_null() {
            // SAFETY: the program passed a readable sigaction.
            let new = unsafe { *act };
            let handler = new.sa_sigaction;
            let program_runs_its_own =
                handler != libc::SIG_DFL && (handler != libc::SIG_IGN || m.role == Role::Fatal);
            if program_runs_its_own {
                if m.role == Role::Cpu {
                    // The timers leave before the program's handler comes: a signal of
                    // theirs generated later would reach it.
                    if !move_cpu_signal(table, sig) {
                        (hooks::get().cpu_stop)();
                        cpu_lost = true;
                    }
                    managed(table, sig)?.role = Role::Fatal;
                }
                let shared = shareable && shares_signal(&new);
                let rc = if shared {
                    install_shared(sig, &new, !is_dump)
                } else {
                    install_program_action(sig, &new)
                };
                if rc != 0 {
                    return Some(Err(rc));
                }
                let m = managed(table, sig)?;
                dump_displaced = !m.displaced && m.role == Role::Dump && !shared;
                m.displaced = true;
                m.program = Some(new);
            } else {
                let m = managed(table, sig)?;
                if m.displaced {
                    // Back to the default (or, for the CPU and dump signals, to ignoring):
                    // ours emulates both, invisibly.
                    install_real(sig, m.role.handler());
                    m.displaced = false;
                }
                ONESHOT[sig as usize].store(0, Ordering::Release);
                m.program = Some(new);
            }
            set_bit(&IGNORED_VIEW, sig, handler == libc::SIG_IGN);
        }
        Some(Ok((view, dump_displaced)))
    });
    let (view, dump_displaced) = match outcome {
        None => return unmanaged_sigaction(sig, act, oact),
        Some(Err(rc)) => return rc,
        Some(Ok(v)) => v,
    };
    if !oact.is_null() {
        // SAFETY: the program passed a writable sigaction.
        unsafe { *oact = view };
    }
    if cpu_lost {
        warning!("the program installed its own handler for signal {sig} and no signal is free for rprof's CPU timers; CPU profiling stops here (samples so far are kept)");
    }
    if dump_displaced {
        warning!("the program installed its own handler for signal {sig}; it no longer writes rprof snapshots");
    }
    0
}

/// sigaction for a signal rprof does not manage: passed on, but its handler's mask never
/// holds the CPU signal (what the program reads back still does).
fn unmanaged_sigaction(sig: i32, act: *const libc::sigaction, oact: *mut libc::sigaction) -> i32 {
    // SAFETY: the program passed a readable sigaction, or null.
    let passed = (!act.is_null()).then(|| without_cpu_signal(sig, unsafe { &*act }));
    let was_masked = has_bit(&MASKED_CPU, sig);
    let rc = real::sigaction(
        sig,
        passed.as_ref().map_or(std::ptr::null(), |a| a as *const _),
        oact,
    );
    if rc == 0 && !oact.is_null() && was_masked {
        let k = cpu_signal::in_use();
        if k != 0 {
            // SAFETY: the program's writable sigaction, just filled in.
            unsafe { libc::sigaddset(&mut (*oact).sa_mask, k) };
        }
    }
    rc
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
        if crate::runtime::masks::program_mask(
            real::pthread_sigmask,
            libc::SIG_BLOCK,
            std::ptr::null(),
            &mut mask,
        ) != 0
        {
            return libc::SIG_ERR;
        }
        let was_blocked = libc::sigismember(&mask, sig) == 1;
        let previous = if disposition == SIG_HOLD {
            let mut old: libc::sigaction = std::mem::zeroed();
            if program_sigaction(sig, std::ptr::null(), &mut old) != 0
                || crate::runtime::masks::program_mask(
                    real::pthread_sigmask,
                    libc::SIG_BLOCK,
                    &one,
                    std::ptr::null_mut(),
                ) != 0
            {
                return libc::SIG_ERR;
            }
            old.sa_sigaction
        } else {
            let previous = set_handler(sig, disposition, 0, false);
            if previous == libc::SIG_ERR
                || crate::runtime::masks::program_mask(
                    real::pthread_sigmask,
                    libc::SIG_UNBLOCK,
                    &one,
                    std::ptr::null_mut(),
                ) != 0
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

/// Async-signal-safe. A CPU signal that is not rprof's: the action the program set for
/// it (its view; the program's own handler would be installed instead of ours).
pub fn foreign_signal(sig: i32) {
    if has_bit(&IGNORED_VIEW, sig) {
        return;
    }
    let _errno = ErrnoGuard::new();
    (hooks::get().fatal)(sig, FATAL_DUMP_TIMEOUT_NS);
}

/// Async-signal-safe. Runs the program's SA_RESETHAND handler for `sig` after putting
/// rprof's handler back, as the kernel would have put SIG_DFL back.
extern "C" fn on_oneshot(sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let Some(slot) = ONESHOT.get(sig as usize) else {
        return;
    };
    let handler = slot.swap(0, Ordering::AcqRel);
    {
        let _errno = ErrnoGuard::new();
        let ours = OURS[sig as usize].load(Ordering::Acquire);
        if ours != 0 {
            // SAFETY: OURS holds only handlers of type Handler stored by install_real.
            install_real(sig, unsafe { std::mem::transmute::<usize, Handler>(ours) });
        }
        set_bit(&RESET_PENDING, sig, true);
    }
    run_program_handler(handler, has_bit(&ONESHOT_SIGINFO, sig), sig, info, uc);
}

/// Async-signal-safe. Calls the program's handler `h` for `sig` as the kernel would
/// (`siginfo`: installed with SA_SIGINFO). SIG_DFL and SIG_IGN (0, 1) never come here.
fn run_program_handler(
    h: usize,
    siginfo: bool,
    sig: i32,
    info: *mut libc::siginfo_t,
    uc: *mut libc::c_void,
) {
    match h {
        0 | 1 => {}
        h if siginfo => {
            // SAFETY: the program installed this SA_SIGINFO handler for `sig`.
            let f = unsafe { std::mem::transmute::<usize, Handler>(h) };
            f(sig, info, uc);
        }
        h => {
            // SAFETY: the program installed this plain handler for `sig`.
            let f = unsafe { std::mem::transmute::<usize, extern "C" fn(i32)>(h) };
            f(sig);
        }
    }
}

/// Async-signal-safe. A signal shared with the program's handler (see `shares_signal`):
/// for a fatal one, the final files first; then the program's handler, as the kernel
/// would have run it; then, for the dump signal, a snapshot.
extern "C" fn on_shared(sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let Some(slot) = SHARED.get(sig as usize) else {
        return;
    };
    let fatal = has_bit(&SHARED_FATAL, sig);
    if fatal {
        // Before the program can act on it (a Go program that catches SIGTERM may return
        // from main at once): the final files as of now. If Go's handler then ends the
        // program, rprof's own handler finds them written (FINAL_WRITTEN_FOR).
        let _errno = ErrnoGuard::new();
        // Go's handler, ending the program, raises the signal again: it comes back here
        // (nested) before Go puts SIG_DFL back, with the files already written.
        if FINAL_WRITTEN_FOR.load(Ordering::Acquire) != sig as u32
            && (hooks::get().final_files_and_wait)(FATAL_DUMP_TIMEOUT_NS)
        {
            FINAL_WRITTEN_FOR.store(sig as u32, Ordering::Release);
        }
    }
    let h = slot.load(Ordering::Acquire);
    run_program_handler(h, has_bit(&SHARED_SIGINFO, sig), sig, info, uc);
    let _errno = ErrnoGuard::new();
    if fatal {
        // The program caught it and goes on: a later ending writes the files again.
        FINAL_WRITTEN_FOR.store(0, Ordering::Release);
    } else {
        (hooks::get().snapshot)();
    }
}

/// The fatal signal for which `on_shared` has just written the final files (0: none).
static FINAL_WRITTEN_FOR: AtomicU32 = AtomicU32::new(0);

/// Async-signal-safe. The dump signal: only records the request.
extern "C" fn on_dump_signal(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let _errno = ErrnoGuard::new();
    (hooks::get().snapshot)();
}

/// Async-signal-safe. SIGINT/SIGTERM at their default action: write the final files, then
/// die of the same signal (or, when the thread was inside rprof, as soon as it leaves).
extern "C" fn on_fatal_signal(sig: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let _errno = ErrnoGuard::new();
    if FINAL_WRITTEN_FOR.load(Ordering::Acquire) == sig as u32 {
        (hooks::get().die_of)(sig);
        return;
    }
    (hooks::get().fatal)(sig, FATAL_DUMP_TIMEOUT_NS);
}
