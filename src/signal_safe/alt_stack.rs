//! A per-thread alternate signal stack, so that a timer signal that lands on a nearly full
//! thread stack is delivered elsewhere: the kernel writes its signal frame (up to 3.4 KiB
//! with AVX-512 state) before any handler runs, so no margin in the handler helps, and a
//! thread with a small stack would die of SIGSEGV. The CPU signal's handler has SA_ONSTACK
//! (`signals::onstack`).
//!
//! A thread that has an alternate stack already (the program's own, Go's, Rust's, Python's
//! faulthandler's) keeps it: the CPU handler runs there. A thread without one gets 512 KiB
//! of rprof's (mapped without reserve, below it a guard page; only the pages a signal
//! touches become resident: one or two for a sample), taken back when the thread ends
//! unless the program has put its own in place. 512 KiB, not less: a dump signal that lands
//! while the CPU handler runs here is delivered here too (its handler has no SA_ONSTACK,
//! so the kernel stays on the stack in use), and a snapshot written on the program's only
//! thread needs 256 KiB (`collector::safe_here` checks the room of whichever stack it is).
#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

const SIZE: usize = 512 * 1024;
const GUARD: usize = 4096;

/// Whether threads get rprof's alternate stacks and the CPU handler SA_ONSTACK: not under
/// valgrind, whose callgrind aborts on a signal delivered on an alternate stack while it
/// tracks another (valgrind 3.19 asserts `sigNum == current_state.sig`). Set at load.
static WANTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// At load: under valgrind (its preload is in LD_PRELOAD), no alternate stacks.
pub fn init() {
    let under_valgrind =
        std::env::var_os("LD_PRELOAD").is_some_and(|v| v.to_string_lossy().contains("/vgpreload_"));
    WANTED.store(!under_valgrind, Ordering::Relaxed);
}

/// Whether the CPU handler runs on alternate stacks (see `WANTED`).
pub fn wanted() -> bool {
    WANTED.load(Ordering::Relaxed)
}

/// Stacks given back by ended threads, kept for the next threads (0: empty slot): a
/// program that makes and ends threads all the time pays two sigaltstack calls a thread,
/// not a mapping made and unmapped (whose TLB shootdown cost more than a create and join).
static SPARE: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

/// A spare stack's mapping, or a new one (None: the system has no memory for it).
fn take_mapping() -> Option<usize> {
    for slot in &SPARE {
        if slot.load(Ordering::Relaxed) != 0 {
            let base = slot.swap(0, Ordering::Acquire);
            if base != 0 {
                return Some(base);
            }
        }
    }
    // SAFETY: a fresh private anonymous mapping, ours alone.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SIZE + GUARD,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the lowest page of our own mapping becomes the guard.
    unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) };
    Some(base as usize)
}

/// Keeps a mapping no thread uses for the next thread, or unmaps it when the spares are
/// full.
fn put_mapping(base: usize) {
    for slot in &SPARE {
        if slot
            .compare_exchange(0, base, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
    // SAFETY: our mapping, in use by nothing.
    unsafe { libc::munmap(base as *mut libc::c_void, SIZE + GUARD) };
}

thread_local! {
    /// The mapping of the stack rprof gave this thread (0: none).
    static OURS: Cell<usize> = const { Cell::new(0) };
}

/// The calling thread's alternate stack, as the kernel has it.
fn current() -> Option<libc::stack_t> {
    // SAFETY: stack_t is plain data; sigaltstack only writes the old stack into it.
    let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only reads the current one.
    (unsafe { libc::sigaltstack(std::ptr::null(), &mut old) } == 0).then_some(old)
}

/// Gives the calling thread an alternate signal stack if it has none.
pub fn give_current_thread() {
    if OURS.with(Cell::get) != 0 || !wanted() {
        return;
    }
    match current() {
        Some(old) if old.ss_flags & libc::SS_DISABLE != 0 => {}
        _ => return,
    }
    let Some(base) = take_mapping() else { return };
    let ss = libc::stack_t {
        ss_sp: (base + GUARD) as *mut libc::c_void,
        ss_flags: 0,
        ss_size: SIZE,
    };
    // SAFETY: ss describes memory mapped by take_mapping, which stays mapped while it is
    // in use.
    if unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) } != 0 {
        put_mapping(base);
        return;
    }
    OURS.with(|o| o.set(base));
}

/// At the thread's end: takes back the stack given, if it is still the thread's and not
/// in use; one the program replaced is left mapped (the program may put it back).
pub fn take_back_current_thread() {
    let base = OURS.with(|o| o.replace(0));
    if base == 0 {
        return;
    }
    let Some(now) = current() else { return };
    if now.ss_sp as usize != base + GUARD || now.ss_flags & libc::SS_ONSTACK != 0 {
        return;
    }
    let off = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: libc::SS_DISABLE,
        ss_size: 0,
    };
    // SAFETY: disables this thread's alternate stack, which is not in use (checked above).
    if unsafe { libc::sigaltstack(&off, std::ptr::null_mut()) } == 0 {
        put_mapping(base);
    }
}

/// Async-signal-safe. The lowest address of the alternate stack rprof gave this thread, if
/// `here` is on it (saves the handler a sigaltstack call per sample).
pub fn floor_if_ours(here: u64) -> Option<u64> {
    let base = OURS.with(Cell::get) as u64;
    let lo = base + GUARD as u64;
    (base != 0 && here >= lo && here < lo + SIZE as u64).then_some(lo)
}
