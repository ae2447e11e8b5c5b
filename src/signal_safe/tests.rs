//! Proof that the sampling path allocates nothing: a counting global allocator wraps the
//! system one for this test binary, and the stack walk plus ring write of a real context
//! must not move its counter.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ring::Ring;
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
    let ring = Ring::new();
    assert!(ring.init());
    let bounds = crate::threads::current_stack_bounds().expect("stack bounds");
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
        ring.push(1, |rec| {
            let w = unwind::walk(
                &regs,
                Some(StackBounds {
                    lo: sp,
                    hi: bounds.hi,
                }),
                &mut rec.pcs,
            );
            rec.depth = w.depth as u16;
        });
        COUNTING.with(|c| c.set(false));
    });
    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst),
        0,
        "the sampling path allocated"
    );
    ring.drain(|rec| depth = rec.depth);
    // At least the ten `nested` frames and the test function below them.
    assert!(depth > 12, "walked only {depth} frames");
}

#[test]
fn a_full_ring_counts_lost_samples_by_weight() {
    let ring = Ring::new();
    assert!(ring.init());
    let mut pushed = 0u64;
    for _ in 0..5000 {
        ring.push(3, |rec| rec.depth = 0);
        pushed += 3;
    }
    let mut kept = 0u64;
    ring.drain(|rec| kept += u64::from(rec.weight));
    let lost = ring.take_lost();
    assert!(lost > 0);
    assert_eq!(
        kept + lost,
        pushed,
        "every sample is kept or counted as lost"
    );
}
