//! What the layers above ask the runtime to do when something happens to the program: a
//! timer signal, the dump signal, a fatal one, a thread starting or ending. Handed in once
//! at load (`set`), so that the runtime names no kind and no consumer. Until then (and in
//! a process rprof does not profile) every hook does nothing.
//!
//! Read from signal handlers: `get` is one atomic load.

use std::sync::OnceLock;

/// A signal handler taking siginfo (SA_SIGINFO).
pub type Handler = extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void);

pub struct Hooks {
    /// The CPU timers' handler.
    pub cpu_handler: Handler,
    /// The program took the timers' signal: move them to `sig` (false: they could not).
    pub cpu_move_to: fn(i32) -> bool,
    /// Stop the CPU timers (the program's SIGPROF handler replaced rprof's, and the
    /// itimer fallback would hit it).
    pub cpu_stop: fn(),
    /// The dump signal arrived: write a snapshot.
    pub snapshot: fn(),
    /// A fatal signal arrived: write the final files within the bound (ns), then die of it.
    pub fatal: fn(i32, u64),
    /// A fatal signal the program handles itself: write the final files now, waiting at
    /// most the bound (ns); whether they were written.
    pub final_files_and_wait: fn(u64) -> bool,
    /// Die of the signal now, as its default action would.
    pub die_of: fn(i32),
    /// A thread of the program starts (on itself), after it registered.
    pub thread_started: fn(),
    /// A registered thread exits (on itself).
    pub thread_exiting: fn(),
    /// The last registered thread exited: rprof's own thread must end first.
    pub last_thread_exited: fn(),
    /// The process has a second thread for the first time.
    pub became_threaded: fn(),
    /// The program calls `_exit` or `_Exit` (a fork child writes its files then).
    pub exit_called: fn(),
}

/// How long the files of a fatal signal may take before the process dies anyway.
pub const FATAL_DUMP_TIMEOUT_NS: u64 = 5_000_000_000;

extern "C" fn no_handler(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

static NONE: Hooks = Hooks {
    cpu_handler: no_handler,
    cpu_move_to: |_| false,
    cpu_stop: || {},
    snapshot: || {},
    fatal: |_, _| {},
    final_files_and_wait: |_| false,
    die_of: |_| {},
    thread_started: || {},
    thread_exiting: || {},
    last_thread_exited: || {},
    became_threaded: || {},
    exit_called: || {},
};

static HOOKS: OnceLock<Hooks> = OnceLock::new();

/// Sets the hooks, once, at load.
pub fn set(h: Hooks) {
    let _ = HOOKS.set(h);
}

/// The hooks (no-ops before `set`). Async-signal-safe.
pub fn get() -> &'static Hooks {
    HOOKS.get().unwrap_or(&NONE)
}
