//! Thin, async-signal-safe wrappers over system calls used from signal context.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, Ordering};

/// Saves errno on creation and restores it on drop, so a signal handler never changes the
/// errno the interrupted code will read.
pub struct ErrnoGuard(i32);

impl ErrnoGuard {
    /// Async-signal-safe.
    pub fn new() -> Self {
        // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
        ErrnoGuard(unsafe { *libc::__errno_location() })
    }
}

impl Default for ErrnoGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ErrnoGuard {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

/// Async-signal-safe. The kernel thread id of the caller (gettid(2)).
pub fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Async-signal-safe. The process id as the kernel has it now (never a cached value).
pub fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_getpid) as i32 }
}

/// Async-signal-safe. The calling thread's name (prctl(PR_GET_NAME)), NUL-padded.
pub fn thread_name() -> [u8; 16] {
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the buffer we pass.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    name
}

/// Async-signal-safe. Sends `sig` to thread `tid` of this process (tgkill(2)).
pub fn tgkill_self(tid: i32, sig: i32) {
    // SAFETY: tgkill only sends a signal; invalid ids make it fail with an error we ignore.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig) };
}

/// Async-signal-safe. Whether thread `tid` of this process still exists (tgkill with
/// signal 0 sends nothing and fails with ESRCH once the thread is gone).
/// Leaves errno as it was.
pub fn thread_exists(tid: i32) -> bool {
    // SAFETY: errno is this thread's; signal 0 only checks that the target exists.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        let rc = libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0);
        let exists = rc == 0 || *errno != libc::ESRCH;
        *errno = saved;
        exists
    }
}

/// Async-signal-safe. The lowest address of the alternate signal stack the caller runs on
/// (`here` is an address on the caller's stack), or 0 if it runs on none.
pub fn alternate_stack_floor(here: u64) -> u64 {
    // SAFETY: stack_t is plain data; sigaltstack with a null new stack only fills `ss`.
    let mut ss: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sigaltstack,
            std::ptr::null::<libc::stack_t>(),
            &mut ss,
        )
    };
    let lo = ss.ss_sp as u64;
    if rc != 0 || ss.ss_flags & libc::SS_ONSTACK == 0 || here < lo || here >= lo + ss.ss_size as u64
    {
        return 0;
    }
    lo
}

/// Async-signal-safe. Monotonic clock in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Async-signal-safe. Wakes every thread waiting in [`futex_wait`] on `word` (FUTEX_WAKE).
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only reads the address of a live AtomicU32.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
}

/// Async-signal-safe. Sleeps while `word` still holds `expected`, for at most `timeout_ns`
/// (FUTEX_WAIT). Spurious wake-ups are possible: callers re-check their condition.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    if word.load(Ordering::Acquire) != expected {
        return;
    }
    // SAFETY: FUTEX_WAIT reads the live AtomicU32 and the timespec on our stack.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
        )
    };
}
