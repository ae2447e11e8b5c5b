//! Thread-local access without `__tls_get_addr` for the allocation hooks.
//!
//! In a shared library, Rust's thread-locals use the general-dynamic TLS model: each
//! access calls `__tls_get_addr` (11 instructions, a third of a malloc hook's cost), and
//! stable Rust cannot pick the initial-exec model. But librprof.so is loaded at startup
//! (LD_PRELOAD), so its TLS block is in the static TLS area, at the same offset from the
//! thread pointer in every thread (x86-64 TLS variant II). That offset is measured once at
//! load from the main thread; afterwards an access is `%fs:0` plus the offset. If the
//! library is not in static TLS (the offset is not a small negative number), `get` says
//! so and callers use the ordinary access.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicIsize, Ordering};

pub struct FastTls {
    /// From the thread pointer to the thread-local; 0 until known (it is never 0).
    offset: AtomicIsize,
}

/// The thread pointer (`%fs:0` holds its own address on x86-64 Linux).
#[inline(always)]
fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: reads the TCB self-pointer glibc keeps at %fs:0; no side effects.
    unsafe {
        std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    tp
}

impl FastTls {
    pub const fn new() -> Self {
        FastTls {
            offset: AtomicIsize::new(0),
        }
    }

    /// Records where the calling thread's instance of a thread-local lies (its address).
    pub fn init(&self, address_in_this_thread: usize) {
        let offset = address_in_this_thread as isize - thread_pointer() as isize;
        // Static TLS lies just below the thread pointer; anything else is dynamic TLS.
        if (-(1 << 20)..0).contains(&offset) {
            self.offset.store(offset, Ordering::Relaxed);
        }
    }

    /// The first machine word of the calling thread's instance, read in one instruction
    /// (`mov %fs:(offset)`), or None before `init` (or without static TLS).
    #[inline(always)]
    pub fn load_word(&self) -> Option<usize> {
        let offset = self.offset.load(Ordering::Relaxed);
        if offset == 0 {
            return None;
        }
        let word: usize;
        // SAFETY: %fs:offset is this thread's instance of the thread-local (see `init`),
        // live as long as the thread; the load has no side effects.
        unsafe {
            std::arch::asm!(
                "mov {w}, qword ptr fs:[{o}]",
                w = out(reg) word,
                o = in(reg) offset,
                options(nostack, readonly, preserves_flags)
            )
        };
        Some(word)
    }

    /// The calling thread's instance, or None before `init` (or without static TLS).
    #[inline(always)]
    pub fn get(&self) -> Option<usize> {
        let offset = self.offset.load(Ordering::Relaxed);
        (offset != 0).then(|| (thread_pointer() as isize + offset) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        static PROBE: Cell<u64> = const { Cell::new(0) };
    }

    #[test]
    fn finds_the_same_thread_local_as_the_ordinary_access() {
        static FAST: FastTls = FastTls::new();
        FAST.init(PROBE.with(|p| p as *const Cell<u64> as usize));
        // Test binaries are executables: their TLS is static too.
        let check = || {
            let ordinary = PROBE.with(|p| p as *const Cell<u64> as usize);
            assert_eq!(FAST.get(), Some(ordinary));
            PROBE.with(|p| p.set(ordinary as u64));
            assert_eq!(FAST.load_word(), Some(ordinary));
        };
        check();
        std::thread::spawn(check).join().unwrap();
    }
}
