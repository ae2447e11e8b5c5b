//! Proof that the sampling path allocates nothing: a counting global allocator wraps the
//! system one for this test binary, and the stack walk plus store write of a real context
//! must not move its counter.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::trace_store::TraceStore;
use super::unwind::{self, StackBounds};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only the test's own thread is counted: other tests allocate concurrently.
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(std::cell::Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[inline(never)]
fn nested(depth: u32, f: &mut dyn FnMut()) {
    if depth == 0 {
        f();
    } else {
        nested(depth - 1, f);
    }
    std::hint::black_box(depth);
}

#[test]
fn sampling_path_walks_real_stacks_without_allocating() {
    assert!(unwind::init(), "glibc without _dl_find_object");
    let store = TraceStore::new();
    assert!(store.init());
    let bounds = crate::signal_safe::thread_stacks::current_stack_bounds().expect("stack bounds");
    let mut depth = 0;
    nested(10, &mut || {
        // SAFETY: ucontext_t is plain data filled by getcontext.
        let mut uc: libc::ucontext_t = unsafe { std::mem::zeroed() };
        // SAFETY: getcontext fills the context of this very point of execution.
        assert_eq!(unsafe { libc::getcontext(&mut uc) }, 0);
        COUNTING.with(|c| c.set(true));
        // SAFETY: a ucontext_t as a signal handler would receive it.
        let regs = unsafe { unwind::regs_from_ucontext((&uc as *const libc::ucontext_t).cast()) };
        let sp = regs.0[7].unwrap();
        // Twice: a new entry, then a count added to it.
        for _ in 0..2 {
            store.record(1, [0; 16], 0, |pcs| {
                let w = unwind::walk(&regs, Some(StackBounds::live(sp, bounds.hi)), 0, pcs);
                (w.depth, w.truncated)
            });
        }
        COUNTING.with(|c| c.set(false));
    });
    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst),
        0,
        "the sampling path allocated"
    );
    let mut count = 0;
    store.for_each(0, |_, t, n| {
        depth = t.pcs.len();
        count += n;
    });
    assert_eq!((store.len(), count), (1, 2));
    // At least the ten `nested` frames and the test function below them.
    assert!(depth > 12, "walked only {depth} frames");
}

/// Writes its own stack pointer and the caller's frame pointer at entry to `out`: the
/// registers a hook's entry passes to `walk_from_call` (`[sp]` the return address).
#[unsafe(naked)]
extern "C" fn entry_registers(out: *mut [u64; 2]) {
    std::arch::naked_asm!("mov [rdi], rsp", "mov [rdi + 8], rbp", "ret")
}

#[test]
fn the_cached_walk_gives_the_full_walks_frames_or_none() {
    assert!(unwind::init(), "glibc without _dl_find_object");
    let bounds = crate::signal_safe::thread_stacks::current_stack_bounds().expect("stack bounds");
    nested(6, &mut || {
        let mut at = [0u64; 2];
        entry_registers(&mut at);
        let [sp, bp] = at;
        // SAFETY: `sp` was the stack pointer at entry_registers' entry, below this frame:
        // the return address into this closure is there.
        let ra = unsafe { std::ptr::read(sp as *const u64) };
        let stack = StackBounds::live(sp + 8, bounds.hi);
        let mut regs = unwind::Regs([None; unwind::NREGS]);
        regs.0[unwind::RA] = Some(ra);
        regs.0[unwind::RSP] = Some(sp + 8);
        regs.0[unwind::RBP] = Some(bp);
        let mut cached = [std::mem::MaybeUninit::<u64>::uninit(); unwind::MAX_DEPTH];
        super::rule_cache::rule_cache_clear();
        assert!(
            unwind::walk_cached_from_call(ra, sp + 8, bp, &stack, 0, &mut cached).is_none(),
            "a walk with no rule cached must leave it to the full walk"
        );
        let mut full = [0u64; unwind::MAX_DEPTH];
        let w = unwind::walk_from_call(&regs, Some(stack), 0, &mut full);
        let c = unwind::walk_cached_from_call(ra, sp + 8, bp, &stack, 0, &mut cached)
            .expect("every rule cached by the full walk");
        // SAFETY: the cached walk wrote cached[..c.depth].
        let pcs: Vec<u64> = cached[..c.depth]
            .iter()
            .map(|p| unsafe { p.assume_init() })
            .collect();
        assert_eq!(pcs, full[..w.depth]);
        assert_eq!((c.finished, c.truncated), (w.finished, w.truncated));
        assert!(w.depth > 8 && w.finished, "walked {} frames", w.depth);
    });
}
