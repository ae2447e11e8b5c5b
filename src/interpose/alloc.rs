//! The allocation functions, each a thin shim: the real function (the next definition in
//! lookup order, so a program's own jemalloc or tcmalloc keeps serving it), then the
//! heap profiler's bookkeeping. Frees are reported before the memory goes back.
#![allow(unsafe_code)]

use libc::{c_int, c_void, size_t};

use super::real;
use crate::heap;

/// # Safety
/// As malloc(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc(size: size_t) -> *mut c_void {
    // Counted first, so that the unsampled path is a few instructions and a jump to the
    // real malloc, with no stack frame; the rest is out of line (tail calls). So a malloc
    // that fails is counted too; the other functions count only what they allocate.
    match heap::count_alloc_fast(size) {
        heap::Counted::Unsampled => real::malloc(size),
        // SAFETY: the entry takes malloc's argument and returns its result.
        heap::Counted::Negative => unsafe { rprof_malloc_negative(size) },
        heap::Counted::Slow => malloc_counting(size),
    }
}

// A malloc whose countdown `heap::count_alloc_fast` took below zero: a sample, or the
// thread's first call. The hook reaches it by a tail call, so at its entry `[rsp]` is the
// return address into the program and `rbp` the program's: passed on, the sample's stack
// is walked from the program's frame (`stack::capture_from_call`).
std::arch::global_asm!(
    // In the CPU handler's section, whose pages every sample keeps resident: every thread's
    // first malloc comes here, and a timer tick that expires while the kernel faults in a
    // cold page is delivered at that page's code (the sample would then name rprof).
    ".pushsection .text.hot.rprof_sample,\"ax\",@progbits",
    ".p2align 4",
    ".type rprof_malloc_negative,@function",
    "rprof_malloc_negative:",
    "mov rsi, rsp",
    "mov rdx, rbp",
    "jmp {body}",
    ".size rprof_malloc_negative, . - rprof_malloc_negative",
    ".popsection",
    body = sym malloc_negative_body,
);

extern "C" {
    fn rprof_malloc_negative(size: size_t) -> *mut c_void;
}

/// `malloc`'s negative countdown (see `rprof_malloc_negative`). `extern "C"` (cannot
/// unwind): the entry jumps here.
#[cold]
#[inline(never)]
#[link_section = ".text.hot.rprof_sample"]
extern "C" fn malloc_negative_body(size: size_t, sp: u64, bp: u64) -> *mut c_void {
    if heap::after_fast_count(size) {
        let p = real::malloc(size);
        heap::sample_from_call(p, size, sp, bp);
        return p;
    }
    real::malloc(size)
}

/// A malloc that `heap::count_alloc_fast` did not count.
#[cold]
#[inline(never)]
extern "C" fn malloc_counting(size: size_t) -> *mut c_void {
    if heap::count_alloc(size) {
        return sampled(real::malloc(size), size);
    }
    real::malloc(size)
}

/// `p`, an allocation of `size` bytes that `heap::count_alloc` chose to sample.
#[cold]
#[inline(never)]
fn sampled(p: *mut c_void, size: size_t) -> *mut c_void {
    heap::sample(p, size);
    p
}

/// # Safety
/// As free(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // The common case ends in a jump to the real free, with no stack frame. Null and pool
    // pointers (dlsym's early allocations) are in slots marked for good: they never pass
    // here.
    if heap::count_free_fast(p) {
        return real::free(p);
    }
    free_counting(p)
}

/// A free that `heap::count_free_fast` left to the general path (a slot marked by a
/// sampled block or a pool pointer, a thread's first call). `extern "C"` so that the hook
/// reaches it by a tail call.
#[cold]
#[inline(never)]
extern "C" fn free_counting(p: *mut c_void) {
    // Pool pointers are never freed.
    if p.is_null() || real::is_bootstrap(p) {
        return;
    }
    heap::on_free(p);
    real::free(p);
}

/// # Safety
/// As calloc(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn calloc(n: size_t, size: size_t) -> *mut c_void {
    let p = real::calloc(n, size);
    heap::on_alloc(p, n.saturating_mul(size));
    p
}

/// # Safety
/// As realloc(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn realloc(old: *mut c_void, size: size_t) -> *mut c_void {
    if !old.is_null() && real::is_bootstrap(old) {
        return real::realloc_bootstrap(old, size);
    }
    if old.is_null() {
        let p = real::realloc(old, size);
        heap::on_alloc(p, size);
        return p;
    }
    // The old block is accounted as freed before the call (once it returns, another thread
    // may already have been given that address); a failure leaves it allocated, so that is
    // undone. realloc(p, 0) returning null freed p (glibc).
    let freed = heap::on_free_undoable(old);
    let p = real::realloc(old, size);
    if p.is_null() && size != 0 {
        heap::undo_free(old, freed);
    }
    heap::on_alloc(p, size);
    p
}

/// # Safety
/// As reallocarray(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn reallocarray(old: *mut c_void, n: size_t, size: size_t) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => realloc(old, total),
        None => {
            *libc::__errno_location() = libc::ENOMEM;
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// As posix_memalign(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_memalign(
    out: *mut *mut c_void,
    align: size_t,
    size: size_t,
) -> c_int {
    let rc = real::posix_memalign(out, align, size);
    if rc == 0 {
        heap::on_alloc(*out, size);
    }
    rc
}

/// # Safety
/// As aligned_alloc(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: size_t, size: size_t) -> *mut c_void {
    let p = real::aligned_alloc(align, size);
    heap::on_alloc(p, size);
    p
}

/// # Safety
/// As memalign(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memalign(align: size_t, size: size_t) -> *mut c_void {
    let p = real::memalign(align, size);
    heap::on_alloc(p, size);
    p
}

/// # Safety
/// As valloc(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn valloc(size: size_t) -> *mut c_void {
    let p = real::valloc(size);
    heap::on_alloc(p, size);
    p
}

/// # Safety
/// As pvalloc(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pvalloc(size: size_t) -> *mut c_void {
    let p = real::pvalloc(size);
    heap::on_alloc(p, size);
    p
}

/// # Safety
/// As malloc_usable_size(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> size_t {
    if !p.is_null() && real::is_bootstrap(p) {
        return real::bootstrap_size(p);
    }
    real::malloc_usable_size(p)
}
