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
    let p = real::malloc(size);
    heap::on_alloc(p, size);
    p
}

/// # Safety
/// As free(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // Pool pointers (dlsym's early allocations) are never freed.
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
    if !old.is_null() {
        heap::on_free(old);
    }
    let p = real::realloc(old, size);
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
