//! rprof's own memory: the global allocator of librprof.so, a talc heap over anonymous
//! mappings, so that rprof's Rust code never enters the program's allocator.
//!
//! Why: a dump can be asked for while a program thread holds the allocator's lock (a
//! SIGTERM that lands inside `malloc`); code that then called the program's `malloc` would
//! wait for a thread that will never run again. With memory of its own, rprof's dumps need
//! no lock the program may hold. The heap grows by mappings of at least `CHUNK` bytes
//! (doubling up to 64 MiB), touched only as used, and is never returned to the system.
//!
//! One spin lock guards the heap: held for the few hundred instructions of one allocation,
//! never across a call out of this file. `is_locked` lets a signal handler see that the
//! thread it interrupted may hold it; fork's prepare handler takes it last (after every
//! other rprof lock, whose holders may allocate) so that a child never inherits it held.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use talc::{OomHandler, Span, Talc};

const CHUNK: usize = 1 << 20;
const MAX_CHUNK: usize = 64 << 20;

/// Maps more memory into the heap when it runs out.
struct MapMore {
    next_chunk: usize,
}

impl OomHandler for MapMore {
    fn handle_oom(talc: &mut Talc<Self>, layout: Layout) -> Result<(), ()> {
        let chunk = talc.oom_handler.next_chunk.max(CHUNK);
        let size = (layout.size() + layout.align() + 4096).max(chunk);
        let size = size.next_multiple_of(4096);
        // SAFETY: an anonymous private mapping, owned by this heap from now on.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(());
        }
        talc.oom_handler.next_chunk = (chunk * 2).min(MAX_CHUNK);
        MAPPED.fetch_add(size, Ordering::Relaxed);
        // SAFETY: the span is fresh memory that nothing else uses.
        unsafe { talc.claim(Span::from_base_size(p.cast(), size)) }.map(|_| ())
    }
}

/// Bytes mapped for rprof's own heap.
static MAPPED: AtomicUsize = AtomicUsize::new(0);

pub struct OwnAlloc {
    locked: AtomicBool,
    heap: UnsafeCell<Talc<MapMore>>,
}

// SAFETY: `heap` is reached only with `locked` held (acquire/release).
unsafe impl Sync for OwnAlloc {}

impl OwnAlloc {
    const fn new() -> Self {
        OwnAlloc {
            locked: AtomicBool::new(false),
            heap: UnsafeCell::new(Talc::new(MapMore { next_chunk: CHUNK })),
        }
    }

    /// Takes the lock (spinning; its holders never block).
    pub fn raw_lock(&self) {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }

    pub fn raw_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Async-signal-safe. Whether some thread is inside the allocator now.
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Talc<MapMore>) -> R) -> R {
        self.raw_lock();
        // SAFETY: the lock gives this thread the only access to the heap.
        let r = f(unsafe { &mut *self.heap.get() });
        self.raw_unlock();
        r
    }
}

// SAFETY: talc returns blocks of the requested layout from memory it owns; every call is
// made with the heap lock held.
unsafe impl GlobalAlloc for OwnAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with(|h| h.malloc(layout))
            .map_or(std::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            self.with(|h| h.free(p, layout));
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(p) = NonNull::new(ptr) else {
            return std::ptr::null_mut();
        };
        if new_size <= layout.size() {
            self.with(|h| h.shrink(p, layout, new_size));
            return ptr;
        }
        self.with(|h| h.grow(p, layout, new_size))
            .map_or(std::ptr::null_mut(), NonNull::as_ptr)
    }
}

/// The allocator of every Rust allocation in librprof.so (not in unit-test builds, whose
/// harness brings its own).
#[cfg_attr(not(test), global_allocator)]
pub static OWN: OwnAlloc = OwnAlloc::new();

/// Bytes of memory mapped for rprof's own use so far.
pub fn mapped_bytes() -> usize {
    MAPPED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_grows_shrinks_and_frees_in_its_own_mappings() {
        let a = OwnAlloc::new();
        let small = Layout::from_size_align(24, 8).unwrap();
        let big = Layout::from_size_align(3 << 20, 4096).unwrap();
        // SAFETY: layouts are non-zero; blocks are used within their sizes and freed once.
        unsafe {
            let p = a.alloc(small);
            assert!(!p.is_null());
            p.write_bytes(7, 24);
            let q = a.realloc(p, small, 10_000);
            assert!(!q.is_null() && *q.add(23) == 7);
            let grown = Layout::from_size_align(10_000, 8).unwrap();
            let r = a.realloc(q, grown, 100);
            assert_eq!(r, q, "shrinking stays in place");
            let b = a.alloc(big);
            assert!(!b.is_null() && (b as usize).is_multiple_of(4096));
            b.write_bytes(1, 3 << 20);
            a.dealloc(b, big);
            a.dealloc(r, Layout::from_size_align(100, 8).unwrap());
        }
        assert!(!a.is_locked());
    }
}
