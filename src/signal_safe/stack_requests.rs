//! Stacks of running threads on request (the goroutine dump, the wall sampler): the
//! requester names the threads in slots and waits; each thread's next CPU timer tick
//! answers (`pending`), its handler walking its own stack into the slot that names its id.
//!
//! No signal is sent: one sent to a thread seen running may reach it once it has gone into
//! the kernel, and cut its `nanosleep` or `poll` short (EINTR); a timer tick lands only
//! while the thread runs, as every CPU sample does. A thread that runs little may not tick
//! in time: it gets no answer.
//!
//! `pending` and `answer` are what the handler reaches (async-signal-safe); `ask_quietly`
//! is the requester's side, on rprof's own thread, and allocates.
//!
//! A slot goes FREE → ASKED (requester) → WRITING → DONE (handler) → FREE (requester); a
//! requester that gives up takes ASKED back to FREE, so a late tick finds no slot and
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

/// Taken by each request (the wall sampler and a goroutine dump may ask at once).
static ASKING: super::lock::Lock<()> = super::lock::Lock::new(());
/// A request was ever made: else a fork child need not look at the slots (reading a page
/// of them nobody touched costs a fault in every fork).
static EVER_ASKED: AtomicBool = AtomicBool::new(false);

/// In a fork child: a request of the parent's (on a thread absent here) is over.
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

/// Asks each thread of `tids` (at most `SLOTS`) for its stack at its next CPU timer tick,
/// waits up to `timeout_ns` for all, and returns what came (None for a thread that did not
/// tick in time, or exited). Callers take turns. Not for signal context.
pub fn ask_quietly(tids: &[i32], timeout_ns: u64) -> Vec<Answer> {
    let _turn = ASKING.lock();
    if !EVER_ASKED.load(Ordering::Relaxed) {
        EVER_ASKED.store(true, Ordering::Relaxed);
    }
    let tids = &tids[..tids.len().min(SLOTS)];
    for (slot, &tid) in TABLE.iter().zip(tids) {
        slot.state.store(ASKED, Ordering::Release);
        slot.tid.store(tid, Ordering::Release);
    }
    if !tids.is_empty() {
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
