//! The program's threads: every one started by `pthread_create` (see
//! `interpose::thread_start`) is counted while it lives, with its stack's span.
//!
//! Why count: glibc ends a process whose last thread calls `pthread_exit` only when its
//! count of threads reaches zero, and the collector thread is one of them. When the last
//! of the program's own threads exits, the collector is stopped and joined first, so the
//! process ends exactly as it would without rprof (and writes its files at exit).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::signal_safe::thread_stacks;

/// Live threads of the program (not rprof's) that registered with [`register_current`].
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The stack spans of the live registered threads, summed (MemStats' Stack).
static STACK_BYTES: AtomicU64 = AtomicU64::new(0);

/// The bytes of the live threads' stacks (their whole spans, as reserved).
pub fn stack_bytes() -> u64 {
    STACK_BYTES.load(Ordering::Relaxed)
}

fn stack_span() -> u64 {
    thread_stacks::stack_bounds().map_or(0, |b| b.hi - b.lo)
}

/// Whether the process has (or had) a thread besides the one that loaded rprof; false
/// again in a fork child, which has one thread.
static THREADED: AtomicBool = AtomicBool::new(false);

/// No other thread exists (nor ever did since load or the last fork), so none can hold a
/// lock of rprof's.
pub fn single_threaded() -> bool {
    !THREADED.load(Ordering::Acquire)
}

/// Marks the process as having threads besides the caller.
pub fn set_threaded() {
    if !THREADED.load(Ordering::Relaxed) {
        THREADED.store(true, Ordering::Release);
        (crate::runtime::hooks::get().became_threaded)();
    }
}
/// pthread key (+1) whose destructor runs when a registered thread exits.
pub static EXIT_KEY: AtomicU32 = AtomicU32::new(0);

/// Creates the exit key. Call once at load, before registering threads.
pub fn init() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: creates a key whose destructor is an extern "C" fn taking the value.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
        EXIT_KEY.store(key + 1, Ordering::Release);
    }
}

/// Counts the calling thread as one of the program's, until it exits.
pub fn register_current() {
    thread_stacks::record_current();
    STACK_BYTES.fetch_add(stack_span(), Ordering::Relaxed);
    (crate::runtime::hooks::get().thread_started)();
    let key = EXIT_KEY.load(Ordering::Acquire);
    if key == 0 {
        return;
    }
    LIVE.fetch_add(1, Ordering::AcqRel);
    // SAFETY: the key exists; any non-null value (never dereferenced) makes its destructor
    // run at thread exit.
    unsafe { libc::pthread_setspecific(key - 1, std::ptr::dangling::<libc::c_void>()) };
}

/// In a fork child only the forking thread exists.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
pub fn reset_after_fork() {
    crate::signal_safe::lock::store_changed!(LIVE, 1);
    crate::signal_safe::lock::store_changed!(THREADED, false);
    crate::signal_safe::lock::store_changed!(STACK_BYTES, stack_span());
}

extern "C" fn on_thread_exit(_: *mut libc::c_void) {
    (crate::runtime::hooks::get().thread_exiting)();
    STACK_BYTES.fetch_sub(
        stack_span().min(STACK_BYTES.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    if LIVE.fetch_sub(1, Ordering::AcqRel) == 1 {
        (crate::runtime::hooks::get().last_thread_exited)();
    }
}

/// The ids of the threads other than the caller (at load: a library constructor may have
/// started some). Not signal-safe. Reads /proc only when glibc's `__libc_single_threaded`
/// (glibc 2.32) does not say that the process never had another thread.
pub fn other_thread_ids() -> Vec<i32> {
    // SAFETY: dlsym with a NUL-terminated name; the symbol, where it exists, is a char.
    let single = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__libc_single_threaded".as_ptr()) };
    // SAFETY: as above; a plain byte read.
    if !single.is_null() && unsafe { *(single as *const u8) } != 0 {
        return Vec::new();
    }
    let me = crate::signal_safe::sys::gettid();
    let mut tids = task_ids();
    tids.retain(|&tid| tid != me);
    tids
}

/// The ids of this process's threads, from /proc/self/task, read with getdents64 rather
/// than opendir: opendir takes its buffer from the program's malloc (a lock the program
/// may hold, and bytes that would show in the program's own allocator figures). Not
/// signal-safe (the Vec comes from rprof's own allocator).
pub fn task_ids() -> Vec<i32> {
    let mut out = Vec::new();
    // SAFETY: open with a NUL-terminated path; the fd is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/task".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return out;
    }
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: getdents64 writes at most buf.len() bytes into buf.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut at = 0usize;
        while at + 19 < n as usize {
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name NUL-ended.
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &buf[at + 19..(at + reclen).min(n as usize)];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            if let Some(tid) = std::str::from_utf8(name).ok().and_then(|s| s.parse().ok()) {
                out.push(tid);
            }
            at += reclen;
        }
    }
    // SAFETY: fd was opened above and is closed once.
    unsafe { libc::close(fd) };
    out
}
