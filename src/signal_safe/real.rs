//! The next definitions (in lookup order) of the functions rprof interposes, found with
//! dlsym(RTLD_NEXT) and cached. `init` resolves them all at load so that signal handlers
//! only ever read the cache.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

pub type PthreadCreateFn = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    *mut libc::c_void,
) -> libc::c_int;
type SigactionFn =
    unsafe extern "C" fn(libc::c_int, *const libc::sigaction, *mut libc::sigaction) -> libc::c_int;
type SignalFn = unsafe extern "C" fn(libc::c_int, libc::sighandler_t) -> libc::sighandler_t;
type DlcloseFn = unsafe extern "C" fn(*mut libc::c_void) -> libc::c_int;
pub type SigmaskFn =
    unsafe extern "C" fn(libc::c_int, *const libc::sigset_t, *mut libc::sigset_t) -> libc::c_int;
type SigwaitFn = unsafe extern "C" fn(*const libc::sigset_t, *mut libc::c_int) -> libc::c_int;
type SigwaitinfoFn =
    unsafe extern "C" fn(*const libc::sigset_t, *mut libc::siginfo_t) -> libc::c_int;
type SigtimedwaitFn = unsafe extern "C" fn(
    *const libc::sigset_t,
    *mut libc::siginfo_t,
    *const libc::timespec,
) -> libc::c_int;
type SignalfdFn =
    unsafe extern "C" fn(libc::c_int, *const libc::sigset_t, libc::c_int) -> libc::c_int;

struct Next {
    name: &'static CStr,
    ptr: AtomicPtr<libc::c_void>,
}

impl Next {
    const fn new(name: &'static CStr) -> Self {
        Next {
            name,
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    fn get(&self) -> *mut libc::c_void {
        let p = self.ptr.load(Ordering::Acquire);
        if !p.is_null() {
            return p;
        }
        // SAFETY: dlsym with a NUL-terminated name.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        self.ptr.store(p, Ordering::Release);
        p
    }
}

static PTHREAD_CREATE: Next = Next::new(c"pthread_create");
static SIGACTION: Next = Next::new(c"sigaction");
static SIGNAL: Next = Next::new(c"signal");
static SYSV_SIGNAL: Next = Next::new(c"sysv_signal");
static SIGSET: Next = Next::new(c"sigset");
static DLCLOSE: Next = Next::new(c"dlclose");
static EXIT_NOW: Next = Next::new(c"_exit");
static PTHREAD_SIGMASK: Next = Next::new(c"pthread_sigmask");
static PTHREAD_JOIN: Next = Next::new(c"pthread_join");
static SIGPROCMASK: Next = Next::new(c"sigprocmask");
static SIGWAIT: Next = Next::new(c"sigwait");
static SIGWAITINFO: Next = Next::new(c"sigwaitinfo");
static SIGTIMEDWAIT: Next = Next::new(c"sigtimedwait");
static SIGNALFD: Next = Next::new(c"signalfd");

pub fn init() {
    for n in [
        &EXIT_NOW,
        &PTHREAD_SIGMASK,
        &SIGPROCMASK,
        &SIGWAIT,
        &SIGWAITINFO,
        &SIGTIMEDWAIT,
        &SIGNALFD,
        &PTHREAD_CREATE,
        &SIGACTION,
        &SIGNAL,
        &SYSV_SIGNAL,
        &SIGSET,
        &DLCLOSE,
        &PTHREAD_JOIN,
    ] {
        n.get();
    }
}

/// The real pthread_join, for rprof's own threads (their results are not wanted).
pub fn pthread_join(t: libc::pthread_t) -> i32 {
    let p = PTHREAD_JOIN.get();
    if p.is_null() {
        return libc::ENOSYS;
    }
    type JoinFn = unsafe extern "C" fn(libc::pthread_t, *mut *mut libc::c_void) -> i32;
    // SAFETY: dlsym("pthread_join") has this signature; `t` is a joinable thread of rprof's.
    unsafe { std::mem::transmute::<*mut libc::c_void, JoinFn>(p)(t, std::ptr::null_mut()) }
}

pub fn pthread_create() -> Option<PthreadCreateFn> {
    let p = PTHREAD_CREATE.get();
    // SAFETY: a non-null result of dlsym("pthread_create") has this signature.
    (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, PthreadCreateFn>(p) })
}

/// Calls the real sigaction; -1 with ENOSYS if it cannot be found.
pub fn sigaction(sig: i32, act: *const libc::sigaction, oact: *mut libc::sigaction) -> i32 {
    let p = SIGACTION.get();
    if p.is_null() {
        // SAFETY: writes this thread's errno.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    }
    // SAFETY: dlsym("sigaction") has this signature; arguments are the caller's.
    unsafe { std::mem::transmute::<*mut libc::c_void, SigactionFn>(p)(sig, act, oact) }
}

pub fn signal(sig: i32, handler: libc::sighandler_t) -> libc::sighandler_t {
    signal_like(&SIGNAL, sig, handler)
}

pub fn sysv_signal(sig: i32, handler: libc::sighandler_t) -> libc::sighandler_t {
    signal_like(&SYSV_SIGNAL, sig, handler)
}

pub fn sigset(sig: i32, disposition: libc::sighandler_t) -> libc::sighandler_t {
    signal_like(&SIGSET, sig, disposition)
}

/// Calls `next`, a function with signal()'s signature; SIG_ERR if it cannot be found.
fn signal_like(next: &Next, sig: i32, handler: libc::sighandler_t) -> libc::sighandler_t {
    let p = next.get();
    if p.is_null() {
        return libc::SIG_ERR;
    }
    // SAFETY: signal, sysv_signal and sigset all have this signature.
    unsafe { std::mem::transmute::<*mut libc::c_void, SignalFn>(p)(sig, handler) }
}

/// Sets errno to ENOSYS and returns -1: the next definition could not be found.
fn missing() -> i32 {
    // SAFETY: writes this thread's errno.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    -1
}

/// The real pthread_sigmask (returns an error number, as it does).
pub fn pthread_sigmask(how: i32, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> i32 {
    let p = PTHREAD_SIGMASK.get();
    if p.is_null() {
        return libc::ENOSYS;
    }
    // SAFETY: dlsym("pthread_sigmask") has this signature; arguments are the caller's.
    unsafe { std::mem::transmute::<*mut libc::c_void, SigmaskFn>(p)(how, set, old) }
}

/// The real sigprocmask (-1 and errno on failure).
pub fn sigprocmask(how: i32, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> i32 {
    let p = SIGPROCMASK.get();
    if p.is_null() {
        return missing();
    }
    // SAFETY: dlsym("sigprocmask") has this signature; arguments are the caller's.
    unsafe { std::mem::transmute::<*mut libc::c_void, SigmaskFn>(p)(how, set, old) }
}

pub fn sigwait(set: *const libc::sigset_t, sig: *mut i32) -> i32 {
    let p = SIGWAIT.get();
    if p.is_null() {
        return libc::ENOSYS;
    }
    // SAFETY: dlsym("sigwait") has this signature; arguments are the caller's.
    unsafe { std::mem::transmute::<*mut libc::c_void, SigwaitFn>(p)(set, sig) }
}

pub fn sigwaitinfo(set: *const libc::sigset_t, info: *mut libc::siginfo_t) -> i32 {
    let p = SIGWAITINFO.get();
    if p.is_null() {
        return missing();
    }
    // SAFETY: dlsym("sigwaitinfo") has this signature; arguments are the caller's.
    unsafe { std::mem::transmute::<*mut libc::c_void, SigwaitinfoFn>(p)(set, info) }
}

pub fn sigtimedwait(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
    timeout: *const libc::timespec,
) -> i32 {
    let p = SIGTIMEDWAIT.get();
    if p.is_null() {
        return missing();
    }
    // SAFETY: dlsym("sigtimedwait") has this signature; arguments are the caller's.
    unsafe { std::mem::transmute::<*mut libc::c_void, SigtimedwaitFn>(p)(set, info, timeout) }
}

pub fn signalfd(fd: i32, mask: *const libc::sigset_t, flags: i32) -> i32 {
    let p = SIGNALFD.get();
    if p.is_null() {
        return missing();
    }
    // SAFETY: dlsym("signalfd") has this signature; arguments are the caller's.
    unsafe { std::mem::transmute::<*mut libc::c_void, SignalfdFn>(p)(fd, mask, flags) }
}

/// Calls the real `_exit`: ends the process at once (exit_group if it cannot be found).
pub fn exit_now(status: i32) -> ! {
    let p = EXIT_NOW.get();
    if !p.is_null() {
        // SAFETY: dlsym("_exit") has this signature; it does not return.
        unsafe { std::mem::transmute::<*mut libc::c_void, extern "C" fn(i32) -> !>(p)(status) }
    }
    loop {
        // SAFETY: exit_group ends the process; it does not return.
        unsafe { libc::syscall(libc::SYS_exit_group, status) };
    }
}

pub fn dlclose(handle: *mut libc::c_void) -> i32 {
    let p = DLCLOSE.get();
    if p.is_null() {
        return -1;
    }
    // SAFETY: dlsym("dlclose") has this signature; the handle is the program's.
    unsafe { std::mem::transmute::<*mut libc::c_void, DlcloseFn>(p)(handle) }
}

// ---- The allocator -------------------------------------------------------------------
//
// dlsym may itself allocate (calloc for its error buffer) before the real allocator is
// known. Those few early allocations are served from a static bump pool; free() of a pool
// pointer does nothing and realloc() moves it to the real heap (heaptrack does the same).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize};

type MallocFn = unsafe extern "C" fn(libc::size_t) -> *mut libc::c_void;
type FreeFn = unsafe extern "C" fn(*mut libc::c_void);
type CallocFn = unsafe extern "C" fn(libc::size_t, libc::size_t) -> *mut libc::c_void;
type ReallocFn = unsafe extern "C" fn(*mut libc::c_void, libc::size_t) -> *mut libc::c_void;
type PosixMemalignFn =
    unsafe extern "C" fn(*mut *mut libc::c_void, libc::size_t, libc::size_t) -> libc::c_int;
type AlignedFn = unsafe extern "C" fn(libc::size_t, libc::size_t) -> *mut libc::c_void;
type UsableSizeFn = unsafe extern "C" fn(*mut libc::c_void) -> libc::size_t;

static MALLOC: Next = Next::new(c"malloc");
static FREE: Next = Next::new(c"free");
static CALLOC: Next = Next::new(c"calloc");
static REALLOC: Next = Next::new(c"realloc");
static POSIX_MEMALIGN: Next = Next::new(c"posix_memalign");
static ALIGNED_ALLOC: Next = Next::new(c"aligned_alloc");
static MEMALIGN: Next = Next::new(c"memalign");
static VALLOC: Next = Next::new(c"valloc");
static PVALLOC: Next = Next::new(c"pvalloc");
static MALLOC_USABLE_SIZE: Next = Next::new(c"malloc_usable_size");

/// Set while the allocator functions are being looked up.
static RESOLVING: AtomicBool = AtomicBool::new(false);

const POOL_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Pool(UnsafeCell<[u8; POOL_SIZE]>);
// SAFETY: disjoint ranges of the pool are handed out by an atomic bump pointer.
unsafe impl Sync for Pool {}
static POOL: Pool = Pool(UnsafeCell::new([0; POOL_SIZE]));
static POOL_USED: AtomicUsize = AtomicUsize::new(0);

fn pool_base() -> usize {
    POOL.0.get() as usize
}

/// Whether `p` came from the bootstrap pool (one wrapping comparison: on every free).
#[inline(always)]
pub fn is_bootstrap(p: *mut libc::c_void) -> bool {
    (p as usize).wrapping_sub(pool_base()) < POOL_SIZE
}

/// The size requested for a pool pointer (kept in the 16 bytes before it).
pub fn bootstrap_size(p: *mut libc::c_void) -> usize {
    // SAFETY: pool pointers are preceded by a 16-byte header holding their size.
    unsafe { *((p as *const u8).sub(16) as *const usize) }
}

fn bootstrap_alloc(size: usize) -> *mut libc::c_void {
    let need = (size + 16 + 15) & !15;
    let off = POOL_USED.fetch_add(need, Ordering::AcqRel);
    if off + need > POOL_SIZE {
        return std::ptr::null_mut();
    }
    // SAFETY: [off, off+need) of the pool is ours alone; the pool starts zeroed (calloc).
    unsafe {
        let base = (pool_base() + off) as *mut u8;
        *(base as *mut usize) = size;
        let p = base.add(16).cast();
        // Its frees must reach `free_counting`, which knows pool pointers.
        crate::signal_safe::heap_counters::mark_for_good(p);
        p
    }
}

/// Moves a pool allocation to the real heap.
pub fn realloc_bootstrap(old: *mut libc::c_void, size: usize) -> *mut libc::c_void {
    let new = malloc(size);
    if !new.is_null() {
        let n = bootstrap_size(old).min(size);
        // SAFETY: both ranges are at least n bytes and do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(old as *const u8, new as *mut u8, n) };
    }
    new
}

/// The real function `n`, resolving all of them on first use.
#[inline(always)]
fn next_alloc(n: &Next) -> *mut libc::c_void {
    let p = n.ptr.load(Ordering::Acquire);
    if !p.is_null() {
        return p;
    }
    resolve_alloc(n)
}

#[cold]
#[inline(never)]
fn resolve_alloc(n: &Next) -> *mut libc::c_void {
    if RESOLVING.swap(true, Ordering::AcqRel) {
        return std::ptr::null_mut(); // inside dlsym: the caller uses the pool
    }
    for f in [
        &MALLOC,
        &FREE,
        &CALLOC,
        &REALLOC,
        &POSIX_MEMALIGN,
        &ALIGNED_ALLOC,
        &MEMALIGN,
        &VALLOC,
        &PVALLOC,
        &MALLOC_USABLE_SIZE,
    ] {
        f.get();
    }
    for (next, now) in [(&MALLOC, &MALLOC_NOW), (&FREE, &FREE_NOW)] {
        let p = next.ptr.load(Ordering::Acquire);
        if !p.is_null() {
            now.store(p, Ordering::Release);
        }
    }
    RESOLVING.store(false, Ordering::Release);
    n.ptr.load(Ordering::Acquire)
}

macro_rules! call_or {
    ($next:expr, $ty:ty, $fallback:expr, |$f:ident| $call:expr) => {{
        let p = next_alloc(&$next);
        if p.is_null() {
            $fallback
        } else {
            // SAFETY: dlsym found the function of this name, whose signature this is.
            let $f = unsafe { std::mem::transmute::<*mut libc::c_void, $ty>(p) };
            // SAFETY: the arguments are the program's, passed on unchanged.
            unsafe { $call }
        }
    }};
}

/// The real malloc and free for the hooks' fast paths, never null: a stand-in that looks
/// them up (or serves the pool) until `resolve_alloc` stores them, so a call is one load
/// and an indirect call, with no test.
pub(crate) static MALLOC_NOW: AtomicPtr<libc::c_void> = AtomicPtr::new(malloc_via_lookup as *mut _);
pub(crate) static FREE_NOW: AtomicPtr<libc::c_void> = AtomicPtr::new(free_via_lookup as *mut _);

unsafe extern "C" fn malloc_via_lookup(size: libc::size_t) -> *mut libc::c_void {
    call_or!(MALLOC, MallocFn, bootstrap_alloc(size), |f| f(size))
}

unsafe extern "C" fn free_via_lookup(p: *mut libc::c_void) {
    call_or!(FREE, FreeFn, (), |f| f(p))
}

#[inline(always)]
pub fn malloc(size: usize) -> *mut libc::c_void {
    let f = MALLOC_NOW.load(Ordering::Relaxed);
    // SAFETY: MALLOC_NOW holds malloc_via_lookup or the real malloc: both are MallocFn.
    unsafe { std::mem::transmute::<*mut libc::c_void, MallocFn>(f)(size) }
}

#[inline(always)]
pub fn free(p: *mut libc::c_void) {
    let f = FREE_NOW.load(Ordering::Relaxed);
    // SAFETY: FREE_NOW holds free_via_lookup or the real free: both are FreeFn.
    unsafe { std::mem::transmute::<*mut libc::c_void, FreeFn>(f)(p) }
}

pub fn calloc(n: usize, size: usize) -> *mut libc::c_void {
    call_or!(
        CALLOC,
        CallocFn,
        n.checked_mul(size)
            .map_or(std::ptr::null_mut(), bootstrap_alloc),
        |f| f(n, size)
    )
}

pub fn realloc(p: *mut libc::c_void, size: usize) -> *mut libc::c_void {
    call_or!(REALLOC, ReallocFn, std::ptr::null_mut(), |f| f(p, size))
}

pub fn posix_memalign(out: *mut *mut libc::c_void, align: usize, size: usize) -> i32 {
    call_or!(POSIX_MEMALIGN, PosixMemalignFn, libc::ENOMEM, |f| f(
        out, align, size
    ))
}

pub fn aligned_alloc(align: usize, size: usize) -> *mut libc::c_void {
    call_or!(ALIGNED_ALLOC, AlignedFn, std::ptr::null_mut(), |f| f(
        align, size
    ))
}

pub fn memalign(align: usize, size: usize) -> *mut libc::c_void {
    call_or!(MEMALIGN, AlignedFn, std::ptr::null_mut(), |f| f(
        align, size
    ))
}

pub fn valloc(size: usize) -> *mut libc::c_void {
    call_or!(VALLOC, MallocFn, std::ptr::null_mut(), |f| f(size))
}

pub fn pvalloc(size: usize) -> *mut libc::c_void {
    call_or!(PVALLOC, MallocFn, std::ptr::null_mut(), |f| f(size))
}

pub fn malloc_usable_size(p: *mut libc::c_void) -> usize {
    call_or!(MALLOC_USABLE_SIZE, UsableSizeFn, 0, |f| f(p))
}

/// Whether the real malloc is glibc's (so mallinfo2 describes the program's heap): the
/// next malloc in lookup order is libc.so.6's own. Found once (the allocator does not
/// change): by a hash lookup in libc, not `dladdr`, which scans libc's whole symbol table.
pub fn malloc_is_glibc() -> bool {
    // 0: not known yet, 1: no, 2: yes.
    static KNOWN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    match KNOWN.load(Ordering::Relaxed) {
        1 => return false,
        2 => return true,
        _ => {}
    }
    let p = next_alloc(&MALLOC);
    let yes = !p.is_null() && p == libc_symbol(c"malloc");
    KNOWN.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
    yes
}

/// `name` as libc.so.6 defines it (null if it is not loaded or has no such symbol).
fn libc_symbol(name: &CStr) -> *mut libc::c_void {
    // SAFETY: RTLD_NOLOAD only looks up an object already loaded; the name is NUL-terminated.
    let h = unsafe { libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if h.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: a handle dlopen gave and a NUL-terminated name.
    let f = unsafe { libc::dlsym(h, name.as_ptr()) };
    // libc's, not rprof's own dlclose (which would wait for the dump that may be running).
    dlclose(h);
    f
}
