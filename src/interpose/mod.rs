//! Every symbol librprof.so exports to interpose libc, each a thin shim into the rest.
//! `#[cfg_attr(not(test), no_mangle)]` keeps unit-test binaries from interposing themselves.
#![allow(unsafe_code)]

pub mod alloc;
pub mod locks;
pub mod real;

use crate::signal_safe::unwind::UNLOAD_FENCE;
use crate::{signals, threads};

/// # Safety
/// As pthread_create(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    arg: *mut libc::c_void,
) -> libc::c_int {
    match real::pthread_create() {
        Some(real) => threads::create(real, thread, attr, start, arg),
        None => libc::EAGAIN,
    }
}

/// # Safety
/// As sigaction(2).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sigaction(
    sig: libc::c_int,
    act: *const libc::sigaction,
    oact: *mut libc::sigaction,
) -> libc::c_int {
    signals::program_sigaction(sig, act, oact)
}

/// # Safety
/// As signal(2).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn signal(
    sig: libc::c_int,
    handler: libc::sighandler_t,
) -> libc::sighandler_t {
    if signals::is_managed(sig) {
        signals::program_signal(sig, handler)
    } else {
        real::signal(sig, handler)
    }
}

/// # Safety
/// As bsd_signal(3): signal() with BSD semantics, as glibc's signal() itself.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn bsd_signal(
    sig: libc::c_int,
    handler: libc::sighandler_t,
) -> libc::sighandler_t {
    signal(sig, handler)
}

/// # Safety
/// As ssignal(3), glibc's other name for signal().
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn ssignal(
    sig: libc::c_int,
    handler: libc::sighandler_t,
) -> libc::sighandler_t {
    signal(sig, handler)
}

/// # Safety
/// As sysv_signal(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sysv_signal(
    sig: libc::c_int,
    handler: libc::sighandler_t,
) -> libc::sighandler_t {
    if signals::is_managed(sig) {
        signals::program_sysv_signal(sig, handler)
    } else {
        real::sysv_signal(sig, handler)
    }
}

/// # Safety
/// As sysv_signal(3) (glibc's internal name, which some programs call).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __sysv_signal(
    sig: libc::c_int,
    handler: libc::sighandler_t,
) -> libc::sighandler_t {
    sysv_signal(sig, handler)
}

/// # Safety
/// As sigset(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sigset(
    sig: libc::c_int,
    disposition: libc::sighandler_t,
) -> libc::sighandler_t {
    if signals::is_managed(sig) {
        signals::program_sigset(sig, disposition)
    } else {
        real::sigset(sig, disposition)
    }
}

/// dlclose first has the samples so far symbolized while the object is mapped, then waits
/// for stack walks in progress, so none reads an object being unmapped.
///
/// # Safety
/// As dlclose(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dlclose(handle: *mut libc::c_void) -> libc::c_int {
    crate::guard::unprofiled(crate::dump::before_dlclose);
    UNLOAD_FENCE.begin_close();
    let rc = real::dlclose(handle);
    UNLOAD_FENCE.end_close();
    rc
}
