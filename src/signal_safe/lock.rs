//! A small futex-based mutex whose holder can be released explicitly by fork handlers.
//!
//! std's Mutex cannot be unlocked without its guard, and a child process must be able to
//! release locks that the parent's fork handlers took. Waiters sleep in the kernel (they do
//! not spin), so a collector thread waiting while the exit dump runs costs no CPU.
//! The protocol is Drepper's "Futexes are tricky" mutex #2: 0 unlocked, 1 locked,
//! 2 locked with waiters. Never taken in signal context.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::signal_safe::sys;

pub struct Lock<T> {
    state: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `state`.
unsafe impl<T: Send> Sync for Lock<T> {}

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

impl<T> Lock<T> {
    pub const fn new(value: T) -> Self {
        Lock {
            state: AtomicU32::new(UNLOCKED),
            value: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> Guard<'_, T> {
        self.raw_lock();
        Guard { lock: self }
    }

    fn try_acquire(&self) -> bool {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Tries for about `timeout_ns` nanoseconds to take the lock.
    pub fn try_lock_for(&self, timeout_ns: u64) -> Option<Guard<'_, T>> {
        let deadline = sys::monotonic_ns() + timeout_ns;
        loop {
            if self.try_acquire() {
                return Some(Guard { lock: self });
            }
            let now = sys::monotonic_ns();
            if now >= deadline {
                return None;
            }
            // Mark contended so the holder wakes us, then sleep until woken or timed out.
            if self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return Some(Guard { lock: self });
            }
            sys::futex_wait(&self.state, CONTENDED, (deadline - now).min(5_000_000));
        }
    }

    /// The value, without touching the lock word: in a fork child every page written is
    /// copied, and the lock word of a lock nobody can hold need not be written.
    ///
    /// # Safety
    /// Only in fork's child handler, where the calling thread is the only one and holds
    /// none of rprof's locks (the prepare handler took them only to release them here).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn in_fork_child(&self) -> &mut T {
        // SAFETY: the caller guarantees that nothing else can access the value.
        unsafe { &mut *self.value.get() }
    }

    /// In fork's child handler: frees the lock, which a thread of the parent (absent here)
    /// may have held at the fork. For a lock the prepare handler does not take.
    ///
    /// # Safety
    /// As `in_fork_child`: the calling thread is the only one.
    pub unsafe fn reset_in_fork_child(&self) {
        if self.state.load(Ordering::Relaxed) != UNLOCKED {
            self.state.store(UNLOCKED, Ordering::Relaxed);
        }
    }

    /// Takes the lock without a guard (fork's prepare handler); pair with `raw_unlock`.
    pub fn raw_lock(&self) {
        if self.try_acquire() {
            return;
        }
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            sys::futex_wait(&self.state, CONTENDED, 1_000_000_000);
        }
    }

    /// Releases a lock taken by `raw_lock` (in the parent or the child after fork).
    pub fn raw_unlock(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            sys::futex_wake(&self.state);
        }
    }
}

/// A lock fork's prepare handler takes without a guard, whatever it guards.
pub trait RawLock: Sync {
    fn raw_lock(&self);
    fn raw_unlock(&self);
}

impl<T: Send> RawLock for Lock<T> {
    fn raw_lock(&self) {
        Lock::raw_lock(self)
    }
    fn raw_unlock(&self) {
        Lock::raw_unlock(self)
    }
}

pub struct Guard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.raw_unlock();
    }
}

/// Stores a value into an atomic unless it holds it already. Fork children (and parents
/// just after a fork) pay a page copy for every page they write, so resets write only
/// what changes.
macro_rules! store_changed {
    ($atomic:expr, $value:expr) => {{
        let v = $value;
        if $atomic.load(std::sync::atomic::Ordering::Relaxed) != v {
            $atomic.store(v, std::sync::atomic::Ordering::Relaxed);
        }
    }};
}
pub(crate) use store_changed;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_and_times_out() {
        static L: Lock<u64> = Lock::new(0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..10_000 {
                        *L.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*L.lock(), 40_000);
        let held = L.lock();
        assert!(L.try_lock_for(10_000_000).is_none());
        drop(held);
        assert!(L.try_lock_for(10_000_000).is_some());
    }
}
