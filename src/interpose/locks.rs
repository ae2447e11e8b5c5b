//! The pthread and semaphore waiting calls, each a thin shim: try first (an uncontended
//! acquisition is neither timed nor recorded), else time the real blocking call; unlocks
//! of mutexes and rwlocks first let the mutex profile charge the unlocker. The hottest
//! call, `pthread_mutex_lock`, tries by reading the lock word rather than calling the
//! trylock (see `looks_free`).
//!
//! glibc has two versions of the condition-variable calls; the current ones
//! (GLIBC_2.3.2) are bound explicitly, as mutrace does.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

use libc::{c_int, c_void, clockid_t, timespec};

use crate::kinds::waits::{self, before_unlock, timed_wait};

struct Next {
    name: &'static CStr,
    version: Option<&'static CStr>,
    ptr: AtomicPtr<c_void>,
}

impl Next {
    const fn new(name: &'static CStr) -> Self {
        Next {
            name,
            version: None,
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    const fn versioned(name: &'static CStr, version: &'static CStr) -> Self {
        Next {
            name,
            version: Some(version),
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    #[inline]
    fn get(&self) -> *mut c_void {
        let p = self.ptr.load(Ordering::Acquire);
        if !p.is_null() {
            return p;
        }
        // SAFETY: dlsym/dlvsym with NUL-terminated names.
        let p = unsafe {
            match self.version {
                Some(v) => libc::dlvsym(libc::RTLD_NEXT, self.name.as_ptr(), v.as_ptr()),
                None => libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()),
            }
        };
        self.ptr.store(p, Ordering::Release);
        p
    }
}

/// Calls the next definition of a function, typed `$ty`; ENOSYS if there is none.
macro_rules! next {
    ($n:expr, $ty:ty) => {{
        let p = $n.get();
        if p.is_null() {
            return libc::ENOSYS;
        }
        // SAFETY: the next definition of this name has this C signature.
        unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
    }};
}

type P1 = unsafe extern "C" fn(*mut c_void) -> c_int;
type P2 = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
type PTime = unsafe extern "C" fn(*mut c_void, *const timespec) -> c_int;
type PClock = unsafe extern "C" fn(*mut c_void, clockid_t, *const timespec) -> c_int;
type CondTime = unsafe extern "C" fn(*mut c_void, *mut c_void, *const timespec) -> c_int;
type CondClock =
    unsafe extern "C" fn(*mut c_void, *mut c_void, clockid_t, *const timespec) -> c_int;
type Join = unsafe extern "C" fn(libc::pthread_t, *mut *mut c_void) -> c_int;

static MUTEX_LOCK: Next = Next::new(c"pthread_mutex_lock");
static MUTEX_TRYLOCK: Next = Next::new(c"pthread_mutex_trylock");
static MUTEX_TIMEDLOCK: Next = Next::new(c"pthread_mutex_timedlock");
static MUTEX_CLOCKLOCK: Next = Next::new(c"pthread_mutex_clocklock");
static MUTEX_UNLOCK: Next = Next::new(c"pthread_mutex_unlock");
static RW_RDLOCK: Next = Next::new(c"pthread_rwlock_rdlock");
static RW_TRYRDLOCK: Next = Next::new(c"pthread_rwlock_tryrdlock");
static RW_WRLOCK: Next = Next::new(c"pthread_rwlock_wrlock");
static RW_TRYWRLOCK: Next = Next::new(c"pthread_rwlock_trywrlock");
static RW_TIMEDRDLOCK: Next = Next::new(c"pthread_rwlock_timedrdlock");
static RW_TIMEDWRLOCK: Next = Next::new(c"pthread_rwlock_timedwrlock");
static RW_CLOCKRDLOCK: Next = Next::new(c"pthread_rwlock_clockrdlock");
static RW_CLOCKWRLOCK: Next = Next::new(c"pthread_rwlock_clockwrlock");
static RW_UNLOCK: Next = Next::new(c"pthread_rwlock_unlock");
static COND_WAIT: Next = Next::versioned(c"pthread_cond_wait", c"GLIBC_2.3.2");
static COND_TIMEDWAIT: Next = Next::versioned(c"pthread_cond_timedwait", c"GLIBC_2.3.2");
static COND_CLOCKWAIT: Next = Next::new(c"pthread_cond_clockwait");
static SPIN_LOCK: Next = Next::new(c"pthread_spin_lock");
static SPIN_TRYLOCK: Next = Next::new(c"pthread_spin_trylock");
static SEM_WAIT: Next = Next::new(c"sem_wait");
static SEM_TRYWAIT: Next = Next::new(c"sem_trywait");
static SEM_TIMEDWAIT: Next = Next::new(c"sem_timedwait");
static SEM_CLOCKWAIT: Next = Next::new(c"sem_clockwait");
static BARRIER_WAIT: Next = Next::new(c"pthread_barrier_wait");
static JOIN: Next = Next::new(c"pthread_join");
static TRYJOIN: Next = Next::new(c"pthread_tryjoin_np");

/// The real lock and unlock for the two hottest hooks, never null: a stand-in that looks
/// the function up serves until `init` stores it, so the fast path is one indirect jump
/// with no test.
static REAL_MUTEX_LOCK: AtomicPtr<c_void> = AtomicPtr::new(lock_via_lookup as *mut c_void);
static REAL_MUTEX_UNLOCK: AtomicPtr<c_void> = AtomicPtr::new(unlock_via_lookup as *mut c_void);

/// Where the two hottest hooks jump, never null. While the process has a single thread a
/// mutex cannot be contended by another thread, so they jump straight to glibc's own calls
/// (a hook is then one load and an indirect jump, as a preload that only forwards); once
/// the program has threads, and while contention is recorded, to the checking versions
/// (`mutex_lock_checked`, `mutex_unlock_checked`). What the direct jump misses: a
/// single-threaded program's waits on a process-shared mutex held by another process.
static MUTEX_LOCK_ENTRY: AtomicPtr<c_void> = AtomicPtr::new(lock_via_lookup as *mut c_void);
static MUTEX_UNLOCK_ENTRY: AtomicPtr<c_void> = AtomicPtr::new(unlock_via_lookup as *mut c_void);

/// Points the hooks at the checking versions (true: the process has, or is about to have,
/// several threads) or at glibc's calls.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
pub fn set_threaded(threaded: bool) {
    let checked = threaded && waits::active();
    let (lock, unlock) = if checked {
        (
            mutex_lock_checked as *mut c_void,
            mutex_unlock_checked as *mut c_void,
        )
    } else {
        (
            REAL_MUTEX_LOCK.load(Ordering::Relaxed),
            REAL_MUTEX_UNLOCK.load(Ordering::Relaxed),
        )
    };
    // Written only when they change: this runs in every fork child.
    if MUTEX_LOCK_ENTRY.load(Ordering::Relaxed) != lock {
        MUTEX_LOCK_ENTRY.store(lock, Ordering::Release);
    }
    if MUTEX_UNLOCK_ENTRY.load(Ordering::Relaxed) != unlock {
        MUTEX_UNLOCK_ENTRY.store(unlock, Ordering::Release);
    }
}

unsafe extern "C" fn lock_via_lookup(m: *mut c_void) -> c_int {
    next!(MUTEX_LOCK, P1)(m)
}

unsafe extern "C" fn unlock_via_lookup(m: *mut c_void) -> c_int {
    next!(MUTEX_UNLOCK, P1)(m)
}

/// Resolves every function now, so the first contended call does no lookup.
pub fn init() {
    for n in [
        &MUTEX_LOCK,
        &MUTEX_TRYLOCK,
        &MUTEX_TIMEDLOCK,
        &MUTEX_CLOCKLOCK,
        &MUTEX_UNLOCK,
        &RW_RDLOCK,
        &RW_TRYRDLOCK,
        &RW_WRLOCK,
        &RW_TRYWRLOCK,
        &RW_TIMEDRDLOCK,
        &RW_TIMEDWRLOCK,
        &RW_CLOCKRDLOCK,
        &RW_CLOCKWRLOCK,
        &RW_UNLOCK,
        &COND_WAIT,
        &COND_TIMEDWAIT,
        &COND_CLOCKWAIT,
        &SPIN_LOCK,
        &SPIN_TRYLOCK,
        &SEM_WAIT,
        &SEM_TRYWAIT,
        &SEM_TIMEDWAIT,
        &SEM_CLOCKWAIT,
        &BARRIER_WAIT,
        &JOIN,
        &TRYJOIN,
    ] {
        n.get();
    }
    for (next, fast) in [
        (&MUTEX_LOCK, &REAL_MUTEX_LOCK),
        (&MUTEX_UNLOCK, &REAL_MUTEX_UNLOCK),
    ] {
        let p = next.ptr.load(Ordering::Acquire);
        if !p.is_null() {
            fast.store(p, Ordering::Relaxed);
        }
    }
}

/// How long a busy lock is tried again (with a pause between tries) before the wait is
/// timed: a lock released within about a microsecond is not a wait worth recording, as
/// Go's `sync.Mutex.Lock` spins before it blocks and records only the blocking. Bounded by
/// time, not by a count: a `pause` takes from 10 to 140 cycles by processor, and 32 rounds
/// of 8 cost a waiter 7 µs of CPU on the latter. At most `MAX_SPINS` tries, should the clock
/// be slow to read.
const SPIN_NS: u64 = 1_000;
const MAX_SPINS: u32 = 64;

/// Try first: returns Some(rc) unless the trylock still says "busy" after a brief spin
/// (and we are recording).
#[inline(always)]
fn try_first(object: *mut c_void, trylock: &Next) -> Option<c_int> {
    if !waits::active() {
        return None;
    }
    let p = trylock.get();
    if p.is_null() {
        return None;
    }
    // SAFETY: a trylock takes the object and returns 0, EBUSY or another error.
    let trylock = unsafe { std::mem::transmute::<*mut c_void, P1>(p) };
    // SAFETY: as above.
    let rc = unsafe { trylock(object) };
    if rc != libc::EBUSY {
        return Some(rc);
    }
    spin_then_try(|| unsafe { trylock(object) }, |rc| rc != libc::EBUSY)
}

#[cold]
#[inline(never)]
fn spin_then_try(attempt: impl FnMut() -> c_int, done: impl Fn(c_int) -> bool) -> Option<c_int> {
    spin_with_clock(attempt, done, crate::signal_safe::sys::monotonic_ns)
}

/// `spin_then_try` with the clock given (a test's own).
#[inline(always)]
fn spin_with_clock(
    mut attempt: impl FnMut() -> c_int,
    done: impl Fn(c_int) -> bool,
    now: impl Fn() -> u64,
) -> Option<c_int> {
    let start = now();
    for _ in 0..MAX_SPINS {
        std::hint::spin_loop();
        let rc = attempt();
        if done(rc) {
            return Some(rc);
        }
        if now().wrapping_sub(start) >= SPIN_NS {
            break;
        }
    }
    None
}

/// Whether a mutex is free, read from its lock word without an atomic read-modify-write.
///
/// The word is glibc's `__data.__lock`, the first `int` of `pthread_mutex_t` in its public
/// ABI (the all-zero `PTHREAD_MUTEX_INITIALIZER` is an unlocked mutex): 0 while no thread
/// holds a normal, recursive, error-checking, adaptive, robust or priority-inheritance
/// mutex. A priority-protected mutex keeps its ceiling there and always looks busy, which
/// only sends it down the trylock path.
#[inline(always)]
fn looks_free(m: *mut c_void) -> bool {
    // SAFETY: `m` is the caller's pthread_mutex_t (8-aligned, at least 40 bytes), which the
    // real call is about to use; other threads change the word only atomically.
    unsafe { std::sync::atomic::AtomicI32::from_ptr(m as *mut i32).load(Ordering::Relaxed) == 0 }
}

/// # Safety
/// As pthread_mutex_lock(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_mutex_lock(m: *mut c_void) -> c_int {
    let entry = MUTEX_LOCK_ENTRY.load(Ordering::Relaxed);
    std::mem::transmute::<*mut c_void, P1>(entry)(m)
}

/// pthread_mutex_lock in a process with threads, reached by a tail call.
unsafe extern "C" fn mutex_lock_checked(m: *mut c_void) -> c_int {
    // The uncontended path is one load of the lock word and a tail call of the real lock:
    // no stack frame, no atomic instruction of ours (the flag is read only for a busy
    // lock). Calling the real trylock here instead measured 15-20 % slower on an
    // uncontended lock/unlock loop. The price: a wait that starts in
    // the few nanoseconds between this load and the real lock's compare-and-swap is not
    // timed. Everything else is out of line.
    if looks_free(m) || !waits::active() {
        let lock = REAL_MUTEX_LOCK.load(Ordering::Relaxed);
        return std::mem::transmute::<*mut c_void, P1>(lock)(m);
    }
    mutex_lock_slow(m)
}

/// Out of line: try again briefly, then time the wait. `extern "C"` (cannot unwind), so
/// that the hook reaches it by a tail call.
#[cold]
#[inline(never)]
unsafe extern "C" fn mutex_lock_slow(m: *mut c_void) -> c_int {
    let real = next!(MUTEX_LOCK, P1);
    if let Some(rc) = try_first(m, &MUTEX_TRYLOCK) {
        return rc;
    }
    timed_wait(
        pthread_mutex_lock as *const () as usize,
        m as usize,
        true,
        || real(m),
    )
}

/// # Safety
/// As pthread_mutex_timedlock(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_mutex_timedlock(m: *mut c_void, t: *const timespec) -> c_int {
    let real = next!(MUTEX_TIMEDLOCK, PTime);
    if let Some(rc) = try_first(m, &MUTEX_TRYLOCK) {
        return rc;
    }
    timed_wait(
        pthread_mutex_timedlock as *const () as usize,
        m as usize,
        true,
        || real(m, t),
    )
}

/// # Safety
/// As pthread_mutex_clocklock(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_mutex_clocklock(
    m: *mut c_void,
    c: clockid_t,
    t: *const timespec,
) -> c_int {
    let real = next!(MUTEX_CLOCKLOCK, PClock);
    if let Some(rc) = try_first(m, &MUTEX_TRYLOCK) {
        return rc;
    }
    timed_wait(
        pthread_mutex_clocklock as *const () as usize,
        m as usize,
        true,
        || real(m, c, t),
    )
}

/// # Safety
/// As pthread_mutex_unlock(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_mutex_unlock(m: *mut c_void) -> c_int {
    let entry = MUTEX_UNLOCK_ENTRY.load(Ordering::Relaxed);
    std::mem::transmute::<*mut c_void, P1>(entry)(m)
}

/// pthread_mutex_unlock in a process with threads, reached by a tail call.
unsafe extern "C" fn mutex_unlock_checked(m: *mut c_void) -> c_int {
    // While no thread anywhere is in a timed wait, one load and a tail call of the real
    // unlock; otherwise out of line.
    if !waits::any_timed_waiter() {
        let unlock = REAL_MUTEX_UNLOCK.load(Ordering::Relaxed);
        return std::mem::transmute::<*mut c_void, P1>(unlock)(m);
    }
    mutex_unlock_slow(m)
}

#[cold]
#[inline(never)]
unsafe extern "C" fn mutex_unlock_slow(m: *mut c_void) -> c_int {
    before_unlock(pthread_mutex_unlock as *const () as usize, m as usize);
    let real = next!(MUTEX_UNLOCK, P1);
    real(m)
}

macro_rules! rwlock_hooks {
    ($($name:ident, $real:ident, $try:ident, ($($arg:ident: $ty:ty),*), $fnty:ty;)*) => {$(
        /// # Safety
        /// As the pthread_rwlock function of this name.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(rw: *mut c_void $(, $arg: $ty)*) -> c_int {
            let real = next!($real, $fnty);
            if let Some(rc) = try_first(rw, &$try) {
                return rc;
            }
            timed_wait($name as *const () as usize, rw as usize, true, || real(rw $(, $arg)*))
        }
    )*};
}

rwlock_hooks! {
    pthread_rwlock_rdlock, RW_RDLOCK, RW_TRYRDLOCK, (), P1;
    pthread_rwlock_wrlock, RW_WRLOCK, RW_TRYWRLOCK, (), P1;
    pthread_rwlock_timedrdlock, RW_TIMEDRDLOCK, RW_TRYRDLOCK, (t: *const timespec), PTime;
    pthread_rwlock_timedwrlock, RW_TIMEDWRLOCK, RW_TRYWRLOCK, (t: *const timespec), PTime;
    pthread_rwlock_clockrdlock, RW_CLOCKRDLOCK, RW_TRYRDLOCK, (c: clockid_t, t: *const timespec), PClock;
    pthread_rwlock_clockwrlock, RW_CLOCKWRLOCK, RW_TRYWRLOCK, (c: clockid_t, t: *const timespec), PClock;
}

/// # Safety
/// As pthread_rwlock_unlock(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_unlock(rw: *mut c_void) -> c_int {
    let real = next!(RW_UNLOCK, P1);
    before_unlock(pthread_rwlock_unlock as *const () as usize, rw as usize);
    real(rw)
}

/// Condition waits always block; the mutex they release counts as an unlock.
///
/// # Safety
/// As pthread_cond_wait(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_cond_wait(c: *mut c_void, m: *mut c_void) -> c_int {
    let real = next!(COND_WAIT, P2);
    before_unlock(pthread_cond_wait as *const () as usize, m as usize);
    timed_wait(
        pthread_cond_wait as *const () as usize,
        c as usize,
        false,
        || real(c, m),
    )
}

/// # Safety
/// As pthread_cond_timedwait(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_cond_timedwait(
    c: *mut c_void,
    m: *mut c_void,
    t: *const timespec,
) -> c_int {
    let real = next!(COND_TIMEDWAIT, CondTime);
    before_unlock(pthread_cond_timedwait as *const () as usize, m as usize);
    timed_wait(
        pthread_cond_timedwait as *const () as usize,
        c as usize,
        false,
        || real(c, m, t),
    )
}

/// # Safety
/// As pthread_cond_clockwait(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_cond_clockwait(
    c: *mut c_void,
    m: *mut c_void,
    clock: clockid_t,
    t: *const timespec,
) -> c_int {
    let real = next!(COND_CLOCKWAIT, CondClock);
    before_unlock(pthread_cond_clockwait as *const () as usize, m as usize);
    timed_wait(
        pthread_cond_clockwait as *const () as usize,
        c as usize,
        false,
        || real(c, m, clock, t),
    )
}

/// # Safety
/// As pthread_spin_lock(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_spin_lock(s: *mut c_void) -> c_int {
    let real = next!(SPIN_LOCK, P1);
    if let Some(rc) = try_first(s, &SPIN_TRYLOCK) {
        return rc;
    }
    timed_wait(
        pthread_spin_lock as *const () as usize,
        s as usize,
        false,
        || real(s),
    )
}

/// sem_trywait reports "busy" as -1 with errno EAGAIN.
#[inline(always)]
fn sem_try_first(s: *mut c_void) -> Option<c_int> {
    if !waits::active() {
        return None;
    }
    let p = SEM_TRYWAIT.get();
    if p.is_null() {
        return None;
    }
    // SAFETY: sem_trywait takes the semaphore; errno is this thread's.
    let trywait = unsafe { std::mem::transmute::<*mut c_void, P1>(p) };
    // SAFETY: as above.
    let busy = |rc: c_int| rc != 0 && unsafe { *libc::__errno_location() } == libc::EAGAIN;
    // SAFETY: as above.
    let rc = unsafe { trywait(s) };
    if !busy(rc) {
        return Some(rc);
    }
    // SAFETY: as above.
    spin_then_try(|| unsafe { trywait(s) }, |rc| !busy(rc))
}

/// # Safety
/// As sem_wait(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sem_wait(s: *mut c_void) -> c_int {
    let real = next!(SEM_WAIT, P1);
    if let Some(rc) = sem_try_first(s) {
        return rc;
    }
    timed_wait(sem_wait as *const () as usize, s as usize, false, || {
        real(s)
    })
}

/// # Safety
/// As sem_timedwait(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sem_timedwait(s: *mut c_void, t: *const timespec) -> c_int {
    let real = next!(SEM_TIMEDWAIT, PTime);
    if let Some(rc) = sem_try_first(s) {
        return rc;
    }
    timed_wait(
        sem_timedwait as *const () as usize,
        s as usize,
        false,
        || real(s, t),
    )
}

/// # Safety
/// As sem_clockwait(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sem_clockwait(s: *mut c_void, c: clockid_t, t: *const timespec) -> c_int {
    let real = next!(SEM_CLOCKWAIT, PClock);
    if let Some(rc) = sem_try_first(s) {
        return rc;
    }
    timed_wait(
        sem_clockwait as *const () as usize,
        s as usize,
        false,
        || real(s, c, t),
    )
}

/// # Safety
/// As pthread_barrier_wait(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_barrier_wait(b: *mut c_void) -> c_int {
    let real = next!(BARRIER_WAIT, P1);
    timed_wait(
        pthread_barrier_wait as *const () as usize,
        b as usize,
        false,
        || real(b),
    )
}

/// # Safety
/// As pthread_join(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_join(t: libc::pthread_t, ret: *mut *mut c_void) -> c_int {
    let real = next!(JOIN, Join);
    if waits::active() {
        let p = TRYJOIN.get();
        if !p.is_null() {
            // SAFETY: pthread_tryjoin_np has pthread_join's signature; EBUSY = still running.
            let rc = std::mem::transmute::<*mut c_void, Join>(p)(t, ret);
            if rc != libc::EBUSY {
                return rc;
            }
        }
    }
    timed_wait(
        pthread_join as *const () as usize,
        t as usize,
        false,
        || real(t, ret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spin before a timed wait ends after SPIN_NS of the clock, however many tries
    /// that is (a `pause` costs 10 to 140 cycles by processor), and after MAX_SPINS tries
    /// should the clock stand still; a lock freed meanwhile ends it at once.
    #[test]
    fn the_spin_is_bounded_by_time() {
        let clock = std::cell::Cell::new(0u64);
        let tries = std::cell::Cell::new(0u32);
        let busy = || {
            tries.set(tries.get() + 1);
            libc::EBUSY
        };
        // 250 ns a try: four tries make the microsecond.
        let ticking = || {
            clock.set(clock.get() + 250);
            clock.get()
        };
        assert_eq!(spin_with_clock(busy, |rc| rc != libc::EBUSY, ticking), None);
        assert_eq!(tries.get(), 4);
        tries.set(0);
        assert_eq!(spin_with_clock(busy, |rc| rc != libc::EBUSY, || 0), None);
        assert_eq!(tries.get(), MAX_SPINS);
        tries.set(0);
        let freed_at_third = || {
            tries.set(tries.get() + 1);
            if tries.get() == 3 {
                0
            } else {
                libc::EBUSY
            }
        };
        assert_eq!(
            spin_with_clock(freed_at_third, |rc| rc != libc::EBUSY, || 0),
            Some(0)
        );
        assert_eq!(tries.get(), 3);
    }
}
