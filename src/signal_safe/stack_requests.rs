//! Stacks of running threads on request (the goroutine dump): the requester queues rprof's
//! SIGPROF to a thread with `rt_tgsigqueueinfo` (si_code SI_QUEUE, our pid, a magic value,
//! so it is told apart from the CPU timers and from any other sender) and waits; the
//! thread's handler walks its own stack into the slot that names its id.
//!
//! `ask_quietly` sends no signal: the request waits for the thread's next CPU timer tick,
//! whose handler answers it (`pending`). The wall sampler asks so, every tick: a signal
//! sent to a thread seen running may reach it once it has gone into the kernel, and cut
//! its `nanosleep` or `poll` short (EINTR); a timer tick lands only while the thread runs,
//! as every CPU sample does. A thread that runs little may not tick in time: it has no
//! stack in that sample.
//!
//! `is_request`, `pending` and `answer` are what the handler reaches (async-signal-safe);
//! `ask` and `ask_quietly` are the requester's side, on rprof's own thread, and allocate.
//!
//! A slot goes FREE → ASKED (requester) → WRITING → DONE (handler) → FREE (requester); a
//! requester that gives up takes ASKED back to FREE, so a late signal finds no slot and
//! writes nothing.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

use super::sys;
use super::unwind::{self, StackBounds, MAX_DEPTH};

pub const SLOTS: usize = 64;
const FREE: u32 = 0;
const ASKED: u32 = 1;
const WRITING: u32 = 2;
const DONE: u32 = 3;
/// si_value of a stack request ("rpst").
const MAGIC: i32 = 0x7470_7372;
const SI_QUEUE: i32 = -1;

struct Slot {
    tid: AtomicI32,
    state: AtomicU32,
    depth: AtomicUsize,
    truncated: AtomicBool,
    finished: AtomicBool,
    pcs: UnsafeCell<[u64; MAX_DEPTH]>,
}

// SAFETY: `pcs` is written only by the handler that moved the slot ASKED → WRITING and
// read only by the requester after it saw DONE.
unsafe impl Sync for Slot {}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        tid: AtomicI32::new(0),
        state: AtomicU32::new(FREE),
        depth: AtomicUsize::new(0),
        truncated: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        pcs: UnsafeCell::new([0; MAX_DEPTH]),
    }
}; SLOTS];

/// Whether a SIGPROF is a stack request (checked first by the SIGPROF handler).
///
/// # Safety
/// `info` must be the siginfo the kernel passed to a SA_SIGINFO handler.
pub unsafe fn is_request(info: *const libc::siginfo_t) -> bool {
    if info.is_null() || (*info).si_code != SI_QUEUE {
        return false;
    }
    // For SI_QUEUE the union holds { pid_t si_pid; uid_t si_uid; sigval si_value; } at
    // offset 16 on 64-bit Linux.
    let base = info as *const u8;
    let pid = std::ptr::read_unaligned(base.add(16) as *const i32);
    let value = std::ptr::read_unaligned(base.add(24) as *const i32);
    // SAFETY: getpid has no preconditions.
    value == MAGIC && pid == unsafe { libc::getpid() }
}

/// In the SIGPROF handler: writes this thread's interrupted stack into its slot, if one
/// is waiting for it. Async-signal-safe.
pub fn answer(regs: &unwind::Regs, stack: Option<StackBounds>, floor: u64) {
    let me = sys::gettid();
    let Some(slot) = TABLE.iter().find(|s| s.tid.load(Ordering::Acquire) == me) else {
        return;
    };
    if slot
        .state
        .compare_exchange(ASKED, WRITING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    // SAFETY: WRITING makes this handler the slot's only user until DONE.
    let pcs = unsafe { &mut *slot.pcs.get() };
    let w = unwind::walk(regs, stack, floor, pcs);
    slot.depth.store(w.depth, Ordering::Relaxed);
    slot.truncated.store(w.truncated, Ordering::Relaxed);
    slot.finished.store(w.finished, Ordering::Relaxed);
    slot.state.store(DONE, Ordering::Release);
    ANSWERED.fetch_add(1, Ordering::Release);
    sys::futex_wake(&ANSWERED);
}

/// Answers given so far: the requester waits on it (a futex word).
static ANSWERED: AtomicU32 = AtomicU32::new(0);
/// A quiet request waits for the CPU timers' ticks (`ask_quietly`).
static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether a quiet request may be waiting for this tick's handler. Async-signal-safe; one
/// load on the CPU handler's path.
#[inline]
pub fn pending() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Taken by each `ask` (the wall sampler and a goroutine dump may ask at once).
static ASKING: super::lock::Lock<()> = super::lock::Lock::new(());
/// Some `ask` was ever made: else a fork child need not look at the slots (reading a page
/// of them nobody touched costs a fault in every fork).
static EVER_ASKED: AtomicBool = AtomicBool::new(false);

/// In a fork child: an `ask` of the parent's (on a thread absent here) is over.
pub fn reset_after_fork() {
    if !EVER_ASKED.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: fork's child handler, on the only thread.
    unsafe { ASKING.reset_in_fork_child() };
    QUIET.store(false, Ordering::Relaxed);
    for slot in &TABLE {
        if slot.state.load(Ordering::Relaxed) != FREE {
            slot.tid.store(0, Ordering::Relaxed);
            slot.state.store(FREE, Ordering::Relaxed);
        }
    }
}

/// One thread's answer (in the order asked): its stack (leaf first) and whether it was
/// cut at MAX_DEPTH.
pub struct Answer {
    pub stack: Option<(Vec<u64>, bool)>,
    /// The walk reached the thread's outermost frame.
    pub finished: bool,
}

/// Asks each thread of `tids` (at most `SLOTS`) for its stack with the signal `sig`, waits
/// up to `timeout_ns` for all, and returns what came (None for a thread that did not
/// answer: it had the signal blocked, or it exited). Callers take turns. Not for signal
/// context.
pub fn ask(tids: &[i32], sig: i32, timeout_ns: u64) -> Vec<Answer> {
    ask_with(tids, Some(sig), timeout_ns)
}

/// As `ask`, sending no signal: each thread answers at its next CPU timer tick (None for a
/// thread that did not tick within `timeout_ns`).
pub fn ask_quietly(tids: &[i32], timeout_ns: u64) -> Vec<Answer> {
    ask_with(tids, None, timeout_ns)
}

fn ask_with(tids: &[i32], sig: Option<i32>, timeout_ns: u64) -> Vec<Answer> {
    let _turn = ASKING.lock();
    if !EVER_ASKED.load(Ordering::Relaxed) {
        EVER_ASKED.store(true, Ordering::Relaxed);
    }
    let tids = &tids[..tids.len().min(SLOTS)];
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    for (slot, &tid) in TABLE.iter().zip(tids) {
        slot.state.store(ASKED, Ordering::Release);
        slot.tid.store(tid, Ordering::Release);
        let Some(sig) = sig else {
            continue;
        };
        // SAFETY: siginfo_t is plain data; rt_tgsigqueueinfo reads it.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            info.si_signo = sig;
            info.si_code = SI_QUEUE;
            let base = (&mut info as *mut libc::siginfo_t).cast::<u8>();
            std::ptr::write_unaligned(base.add(16) as *mut i32, pid);
            std::ptr::write_unaligned(base.add(20) as *mut u32, libc::getuid());
            std::ptr::write_unaligned(base.add(24) as *mut i32, MAGIC);
            libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, sig, &info);
        }
    }
    if sig.is_none() && !tids.is_empty() {
        QUIET.store(true, Ordering::Release);
    }
    let deadline = sys::monotonic_ns() + timeout_ns;
    let slots = &TABLE[..tids.len()];
    loop {
        let seen = ANSWERED.load(Ordering::Acquire);
        let now = sys::monotonic_ns();
        if now >= deadline
            || slots
                .iter()
                .all(|s| s.state.load(Ordering::Acquire) == DONE)
        {
            break;
        }
        sys::futex_wait(&ANSWERED, seen, deadline - now);
    }
    QUIET.store(false, Ordering::Release);
    let mut out = Vec::with_capacity(tids.len());
    for slot in slots {
        // Give up on a slot nobody took; wait out one being written.
        let _ = slot
            .state
            .compare_exchange(ASKED, FREE, Ordering::AcqRel, Ordering::Relaxed);
        while slot.state.load(Ordering::Acquire) == WRITING {
            std::hint::spin_loop();
        }
        let stack = (slot.state.load(Ordering::Acquire) == DONE).then(|| {
            // SAFETY: DONE: the handler finished writing and no other writer can start.
            let pcs = unsafe { &*slot.pcs.get() };
            let depth = slot.depth.load(Ordering::Relaxed).min(MAX_DEPTH);
            (
                pcs[..depth].to_vec(),
                slot.truncated.load(Ordering::Relaxed),
            )
        });
        let finished = stack.is_some() && slot.finished.load(Ordering::Relaxed);
        slot.tid.store(0, Ordering::Release);
        slot.state.store(FREE, Ordering::Release);
        out.push(Answer { stack, finished });
    }
    out
}
