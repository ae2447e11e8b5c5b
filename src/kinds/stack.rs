//! Stack capture from inside a hook (malloc, lock, unlock): the calling thread walks its
//! own stack with the signal-safe unwinder, from this very function.
#![allow(unsafe_code)]

use crate::signal_safe::thread_stacks;
use crate::signal_safe::unwind::{self, Regs, MAX_DEPTH};
use crate::symbols::symbolize;

/// What to do with rprof's own frames at the leaf end.
#[derive(Clone, Copy, PartialEq)]
pub enum OwnFrames {
    /// Drop them all: the stack starts at the program's function (heap: the caller of malloc).
    Drop,
    /// Drop them all and start with this address instead: the exported function the
    /// program called (`pthread_mutex_lock`), as Go's block stacks start at
    /// `sync.(*Mutex).Lock`. Named explicitly rather than found on the stack, so that the
    /// hooks may reach their slow paths by tail calls.
    Entry(usize),
}

/// The calling thread's stack, leaf first (return addresses minus one).
#[inline(never)]
pub fn capture(own: OwnFrames) -> Vec<u64> {
    let mut pcs = [0u64; MAX_DEPTH];
    let depth = walk_from_here(&mut pcs);
    let code = symbolize::own_code();
    let first_program = pcs[..depth]
        .iter()
        .position(|pc| !(code.0..code.1).contains(pc))
        .unwrap_or(depth);
    match own {
        OwnFrames::Drop => pcs[first_program..depth].to_vec(),
        OwnFrames::Entry(function) => {
            // One byte into the function: a return-address-minus-one style location that
            // symbolizes to it.
            let mut stack = Vec::with_capacity(depth - first_program + 1);
            stack.push(function as u64 + 1);
            stack.extend_from_slice(&pcs[first_program..depth]);
            stack
        }
    }
}

/// Runs `f` on the stack of the program's call into a hook, from the hook's entry: `sp` as
/// it was there (the return address into the program at `[sp]`) and the program's `rbp`.
/// Only the program's frames are walked (half the steps of `capture`, which starts in
/// rprof), and `f` reads them where they were walked, not from a copy.
/// Falls back to `capture` when `[sp]` is in rprof (the hook did not reach its slow path
/// by a tail call).
pub fn with_stack_from_call<R>(sp: u64, bp: u64, f: impl FnOnce(&[u64]) -> R) -> R {
    // SAFETY: `sp` is this thread's stack pointer at the hook's entry, below our frames:
    // mapped, and holding the return address the call pushed.
    let ret = unsafe { std::ptr::read(sp as *const u64) };
    let code = symbolize::own_code();
    if (code.0..code.1).contains(&ret) {
        return f(&capture(OwnFrames::Drop));
    }
    let own = bounds();
    let bounds = own
        .and_then(|b| (sp >= b.lo && sp < b.hi).then_some(unwind::StackBounds::live(sp + 8, b.hi)));
    let floor = own.map_or(0, |b| b.lo);
    // Not zeroed: the cached walk writes what it returns, and a kilobyte of stores the
    // program's loop has evicted is most of what a sample would otherwise cost.
    let mut pcs = [std::mem::MaybeUninit::<u64>::uninit(); MAX_DEPTH];
    if let Some(b) = &bounds {
        if let Some(w) = unwind::walk_cached_from_call(ret, sp + 8, bp, b, floor, &mut pcs) {
            // SAFETY: the walk wrote pcs[..depth].
            return f(unsafe { std::slice::from_raw_parts(pcs.as_ptr().cast::<u64>(), w.depth) });
        }
    }
    walk_in_full(ret, sp, bp, bounds, floor, f)
}

/// Stacks `with_stack_from_call` walked in full: few, once the rules are cached (the
/// count is kept only on this path; the debug log reports it beside the samples).
static FULL_WALKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many stacks of hooks were walked in full rather than from the rule cache.
pub fn full_walks() -> u64 {
    FULL_WALKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// `with_stack_from_call`'s full walk (a rule not cached yet, or no stack bounds).
#[inline(never)]
fn walk_in_full<R>(
    ret: u64,
    sp: u64,
    bp: u64,
    bounds: Option<unwind::StackBounds>,
    floor: u64,
    f: impl FnOnce(&[u64]) -> R,
) -> R {
    FULL_WALKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut regs = Regs([None; 17]);
    regs.0[16] = Some(ret);
    regs.0[7] = Some(sp + 8);
    regs.0[6] = Some(bp);
    let mut pcs = [0u64; MAX_DEPTH];
    let depth = unwind::walk_from_call(&regs, bounds, floor, &mut pcs).depth;
    f(&pcs[..depth])
}

/// The calling thread's stack span, looked up at its first capture if rprof did not see
/// the thread start (pthread_getattr_np allocates: inside the guard).
fn bounds() -> Option<unwind::StackBounds> {
    thread_stacks::stack_bounds()
        .or_else(|| crate::runtime::guard::unprofiled(thread_stacks::learned))
}

#[inline(never)]
fn walk_from_here(pcs: &mut [u64; MAX_DEPTH]) -> usize {
    let (rip, rsp, rbp): (u64, u64, u64);
    // SAFETY: reads the instruction pointer, stack pointer and frame pointer; no side effects.
    unsafe {
        std::arch::asm!(
            "lea {0}, [rip]",
            "mov {1}, rsp",
            "mov {2}, rbp",
            out(reg) rip,
            out(reg) rsp,
            out(reg) rbp,
            options(nomem, nostack, preserves_flags)
        );
    }
    let mut regs = Regs([None; 17]);
    regs.0[16] = Some(rip);
    regs.0[7] = Some(rsp);
    regs.0[6] = Some(rbp);
    let own = bounds();
    let bounds = own
        .and_then(|b| (rsp >= b.lo && rsp < b.hi).then_some(unwind::StackBounds::live(rsp, b.hi)));
    unwind::walk(&regs, bounds, own.map_or(0, |b| b.lo), pcs).depth
}
