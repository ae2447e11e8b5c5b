//! Every symbol librprof.so exports to interpose libc, each a thin shim into the rest:
//! `alloc` (malloc and kin), `locks` (pthread waits), `thread_start` (the trampoline of
//! `pthread_create`), and here the signal, mask, exit and dlclose calls.
//! `#[cfg_attr(not(test), no_mangle)]` keeps unit-test binaries from interposing themselves.
//!
//! Contract: the only exported symbols of the library. A shim forwards to the next
//! definition (`signal_safe::real`) and hands the kinds what they record; it allocates
//! nothing and takes no lock on the unsampled path, and keeps errno as the real call left
//! it. May import every layer but the root.
#![allow(unsafe_code)]

pub mod alloc;
pub mod locks;
pub mod thread_start;

use crate::runtime::signals;
use crate::signal_safe::real;
use crate::signal_safe::unwind::UNLOAD_FENCE;

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
        Some(real) => thread_start::create(real, thread, attr, start, arg),
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
    signals::touch(sig);
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
    signals::touch(sig);
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
    signals::touch(sig);
    if signals::is_managed(sig) {
        signals::program_sigset(sig, disposition)
    } else {
        real::sigset(sig, disposition)
    }
}

/// # Safety
/// As pthread_sigmask(3). The CPU timers' signal is never blocked; the program reads back
/// the mask it set (`masks`).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_sigmask(
    how: libc::c_int,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> libc::c_int {
    crate::runtime::masks::program_mask(real::pthread_sigmask, how, set, old)
}

/// # Safety
/// As sigprocmask(2), with pthread_sigmask's care for the CPU signal.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sigprocmask(
    how: libc::c_int,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> libc::c_int {
    crate::runtime::masks::program_mask(real::sigprocmask, how, set, old)
}

/// The program's set for a wait, without the CPU signal (see `masks::wait_set`).
fn wait_set(
    set: *const libc::sigset_t,
    keep: &mut Option<libc::sigset_t>,
) -> *const libc::sigset_t {
    if !set.is_null() && crate::signal_safe::cpu_signal::in_use() != 0 {
        // SAFETY: the program's readable sigset.
        signals::note_waited(unsafe { &*set });
    }
    *keep = crate::runtime::masks::wait_set(set);
    keep.as_ref().map_or(set, |s| s as *const _)
}

/// # Safety
/// As sigwait(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sigwait(set: *const libc::sigset_t, sig: *mut libc::c_int) -> libc::c_int {
    let mut keep = None;
    real::sigwait(wait_set(set, &mut keep), sig)
}

/// # Safety
/// As sigwaitinfo(2).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sigwaitinfo(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
) -> libc::c_int {
    let mut keep = None;
    real::sigwaitinfo(wait_set(set, &mut keep), info)
}

/// # Safety
/// As sigtimedwait(2).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sigtimedwait(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
    timeout: *const libc::timespec,
) -> libc::c_int {
    let mut keep = None;
    real::sigtimedwait(wait_set(set, &mut keep), info, timeout)
}

/// # Safety
/// As signalfd(2).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn signalfd(
    fd: libc::c_int,
    mask: *const libc::sigset_t,
    flags: libc::c_int,
) -> libc::c_int {
    let mut keep = None;
    real::signalfd(fd, wait_set(mask, &mut keep), flags)
}

/// _exit in a fork child that rprof set up writes the child's files first (Python's
/// multiprocessing ends its fork workers with os._exit); anywhere else, and in a vfork
/// child, it only ends the process.
///
/// # Safety
/// As _exit(2).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn _exit(status: libc::c_int) -> ! {
    (crate::runtime::hooks::get().exit_called)();
    real::exit_now(status)
}

/// # Safety
/// As _Exit(2), the same as _exit.
#[cfg_attr(not(test), no_mangle)]
#[allow(non_snake_case)]
pub unsafe extern "C" fn _Exit(status: libc::c_int) -> ! {
    (crate::runtime::hooks::get().exit_called)();
    real::exit_now(status)
}

/// dlclose first has the samples so far symbolized while the object is mapped, then waits
/// for stack walks in progress, so none reads an object being unmapped.
///
/// # Safety
/// As dlclose(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dlclose(handle: *mut libc::c_void) -> libc::c_int {
    let in_rprof = crate::runtime::guard::held();
    crate::runtime::guard::unprofiled(|| crate::consumers::files::before_dlclose(in_rprof));
    UNLOAD_FENCE.begin_close();
    let rc = real::dlclose(handle);
    UNLOAD_FENCE.end_close();
    rc
}
