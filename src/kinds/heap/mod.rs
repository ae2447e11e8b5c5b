//! Heap profiling: sampled allocations, in Go's heap-profile model.
//!
//! Hot path (every malloc and free, no lock, no system call, no unwinding; a malloc is
//! counted before the real call, which is then a tail call): a per-thread
//! byte countdown decides sampling, as Go's `mallocgc` does: the gap between sampled bytes
//! is exponential with mean `RPROF_HEAP_RATE`, so an allocation of size s is sampled with
//! probability 1 − exp(−s/rate). Exact counts (allocation calls, frees, bytes requested)
//! and the countdown are in one cache line of counters that only the calling thread
//! writes (see `Counters`; the bytes follow from the countdown). The thread's state holds
//! the offset of its block from `HOT`, and needs no test: a thread's first call finds 0,
//! `UNCLAIMED` (whose countdown is always negative, so the call takes the general path and
//! claims a block), and rprof's own work finds `DISCARD` (see `guard`). The unsampled
//! hooks are assembly (`interpose::alloc`): a malloc is the TLS load, one add, a
//! subtraction and its sign; a free: the same load, the bit test below and an add.
//!
//! Frees: a sampled block is tracked until freed. A free must tell "not sampled" cheaply:
//! `SLOT_BITS` has one bit per 256-byte granule of address (modulo 64 Ki granules, 8 KiB in
//! all), set while a live sampled block starts in that granule; exact per-slot counts live
//! in the locked table. A free passes the test only for a sampled block or a block
//! starting near one (or 16 MiB away), so few unsampled frees take the table lock (4,148
//! lookups for 3,940 sampled blocks in 4 M frees of 16-1040 B, against 27,788 with a bit
//! per page). The bitmap is small enough to stay cached even when a large heap is freed in
//! random order (a byte per slot measured 13-23 % slower on such a load). Slots marked for good
//! (`mark_for_good`: the loader's early allocations from the bootstrap pool, which must
//! never reach the real free) send those frees down the general path too.
//!
//! Sampled path (about once per 512 KiB allocated): the stack is walked from the hook with
//! the signal-safe unwinder, rprof's own frames are dropped, and the (stack, size) bucket
//! and the live-block table are updated under a lock. Everything rprof allocates meanwhile
//! passes through unprofiled (`guard`).
#![allow(unsafe_code)]

mod peak;
mod profile;
mod sampler;
mod table;

use crate::signal_safe::heap_counters::*;

use rprof_profile::Profile;

use super::{state, Context, Kind, Path, Shape, State};
use crate::config::{Config, LogLevel};
use crate::signal_safe::lock::RawLock;
pub use peak::*;
pub use profile::*;
pub use sampler::*;
pub use table::*;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::kinds::stack::{self, OwnFrames};
use crate::runtime::guard::Guard;
use crate::signal_safe::fast_hash::FastHash;
use crate::signal_safe::lock::{store_changed, Lock};
use crate::signal_safe::thread_state::{self, ThreadState};
use crate::symbols::symbolize::{self, Symbolizer};

/// Mean bytes between samples; 0 while heap profiling is off.
pub(crate) static RATE: AtomicU64 = AtomicU64::new(0);
pub(crate) static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Heap profiling is off for good (before `init`, neither flag is set).
pub(crate) static OFF: AtomicBool = AtomicBool::new(false);

/// Distinct (stack, size) buckets kept; beyond that, samples go to one bucket per size
/// under a synthetic frame. Buckets are split by size, so a program with many sizes has
/// many per stack: each bucket shares its stack with the others of that stack (about 70
/// bytes a bucket with its index), so a million of them take about 70 MB, and come only
/// from as many samples (Go keeps every bucket, with no bound at all).
pub(crate) const MAX_BUCKETS: usize = 1 << 20;

/// Starts heap profiling at `rate` bytes per sample (0 leaves it off).
pub fn init(rate: u64) {
    detect_cx16();
    if rate == 0 {
        OFF.store(true, Ordering::Relaxed);
        return;
    }
    *TABLE.lock() = Some(HeapTable::default());
    RATE.store(rate, Ordering::Relaxed);
    ACTIVE.store(true, Ordering::Release);
}

pub fn rate() -> u64 {
    RATE.load(Ordering::Relaxed)
}

/// The forking thread's block (its `ThreadState::block`), noted by fork's prepare handler.
static FORKING_BLOCK: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

/// In fork's prepare handler (not under the guard): which block the forking thread writes.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
pub fn note_fork() {
    let b = thread_state::with(|t| t.block.get());
    if FORKING_BLOCK.load(Ordering::Relaxed) != b {
        FORKING_BLOCK.store(b, Ordering::Relaxed);
    }
}

/// In a fork child (one thread): the child's profile starts empty. Sampled blocks inherited
/// from the parent are no longer tracked, so their frees are not counted as samples' frees;
/// the exact counters start from zero (a free of an inherited block still counts in
/// Frees, which cannot tell it from the child's own), and the blocks live at the fork are
/// kept as a count, so that `live_objects` stays the process's. The parent's table is left
/// behind untouched, not freed: the time taken does not depend on the parent's history.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
pub fn reset_after_fork() {
    let me = crate::signal_safe::sys::gettid();
    // The forking thread's own block, as noted before the fork: here its state holds
    // DISCARD, the guard being held around the child's resets.
    let mine: &'static Counters = block_at(FORKING_BLOCK.load(Ordering::Relaxed));
    // SAFETY: called from fork's child handler only (lib.rs).
    let more = unsafe { MORE_BLOCKS.in_fork_child() };
    // Only blocks ever used are written: a page written in a fork child is copied.
    let used = &BLOCKS[..BLOCKS_USED.load(Ordering::Acquire).min(BLOCKS.len())];
    let (mut mallocs, mut frees) = (0u64, HOT.unclaimed.frees.load(Ordering::Relaxed));
    for c in used.iter().chain(more.iter().copied()) {
        mallocs += c.mallocs.load(Ordering::Relaxed);
        frees += c.frees.load(Ordering::Relaxed);
    }
    let inherited = (OBJECTS_AT_FORK.load(Ordering::Relaxed) + mallocs).saturating_sub(frees);
    store_changed!(OBJECTS_AT_FORK, inherited);
    for c in used.iter().chain(more.iter().copied()) {
        if c.owner.load(Ordering::Relaxed) == 0 && !std::ptr::eq(c, mine) {
            continue;
        }
        store_changed!(c.mallocs, 0);
        store_changed!(c.frees, 0);
        // No bytes requested yet.
        store_changed!(c.base, c.countdown.load(Ordering::Relaxed) as u64);
        // The forking thread keeps its block (under its new id); the parent's other
        // threads do not exist here, so their blocks are free again.
        store_changed!(c.retiring, false);
        store_changed!(c.owner, if std::ptr::eq(c, mine) { me } else { 0 });
    }
    if PAGES_MARKED.load(Ordering::Relaxed) {
        for (w, good) in SLOT_BITS.iter().zip(&SLOTS_FOR_GOOD) {
            let keep = good.load(Ordering::Relaxed);
            if w.load(Ordering::Relaxed) != keep {
                w.store(keep, Ordering::Relaxed);
            }
        }
    }
    // A child draws its own sampling: with its parent's countdown and random state, every
    // child of one parent would sample (or not) the same allocations alike.
    let forking = FORKING_BLOCK.load(Ordering::Relaxed);
    if ACTIVE.load(Ordering::Relaxed) && forking != UNCLAIMED_OFFSET && forking != DISCARD_OFFSET {
        thread_state::with(|t| {
            let seed = crate::signal_safe::sys::monotonic_ns()
                ^ (me as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            t.rng.set(seed | 1);
            t.seeded.set(true);
            mine.set_countdown(next_gap(t));
        });
    }
    store_changed!(HOT.unclaimed.frees, 0);
    // SAFETY: as above.
    let table = unsafe { TABLE.in_fork_child() };
    if table.as_ref().is_some_and(|t| !t.buckets.is_empty()) {
        std::mem::forget(table.replace(HeapTable::default()));
    }
}

/// Exact totals since the program started: (allocation calls, frees, bytes requested).
pub fn totals() -> (u64, u64, u64) {
    let more = MORE_BLOCKS.lock();
    let mut t = (0, HOT.unclaimed.frees.load(Ordering::Relaxed), 0);
    for c in BLOCKS.iter().chain(more.iter().copied()) {
        t.0 += c.mallocs.load(Ordering::Relaxed);
        t.1 += c.frees.load(Ordering::Relaxed);
        t.2 += c.bytes();
    }
    t
}

/// The blocks allocated and not yet freed in the process: Mallocs − Frees, plus, in a fork
/// child, the blocks it inherited live (whose frees its Frees count).
pub fn live_objects(mallocs: u64, frees: u64) -> u64 {
    (OBJECTS_AT_FORK.load(Ordering::Relaxed) + mallocs).saturating_sub(frees)
}

/// (frees looked up under the lock, of which frees of sampled blocks, allocations
/// sampled); None if the table stays held for 10 ms (by a thread a fatal signal stopped).
pub fn table_figures() -> Option<(u64, u64, u64)> {
    let guard = TABLE.try_lock_for(10_000_000)?;
    Some(guard.as_ref().map_or((0, 0, 0), |t| {
        (
            t.frees_looked_up,
            t.frees_of_samples,
            t.buckets.iter().map(|b| b.allocs).sum(),
        )
    }))
}

/// No allocation was ever sampled (checked without copying the buckets).
pub fn is_empty() -> bool {
    TABLE.lock().as_ref().is_none_or(|t| t.buckets.is_empty())
}

/// The heap as one reading (see `HeapState`). `allocator_figures`: the allocator may be
/// asked for its own figures (it takes its locks).
pub fn snapshot(allocator_figures: bool) -> HeapState {
    let (buckets, peak, totals) = {
        let guard = TABLE.lock();
        match guard.as_ref() {
            Some(t) => (t.buckets.clone(), peak_of(t), totals()),
            None => (Vec::new(), None, totals()),
        }
    };
    let live_objects = live_objects(totals.0, totals.1);
    HeapState {
        rate: rate(),
        buckets,
        peak,
        totals,
        live_objects,
        memstats: memstats(totals, live_objects, allocator_figures),
        mallinfo: allocator_figures
            .then(crate::symbols::maps::glibc_mallinfo2)
            .flatten(),
        rss: crate::symbols::maps::rss(),
    }
}

/// Go's MemStats of the process now (`/debug/vars`).
pub fn memstats_now(allocator_figures: bool) -> Vec<(&'static str, u64)> {
    let t = totals();
    memstats(t, live_objects(t.0, t.1), allocator_figures)
}

pub struct Heap;
pub static HEAP: Heap = Heap;

impl Kind for Heap {
    fn name(&self) -> &'static str {
        "heap"
    }
    fn about(&self) -> &'static str {
        "A sampling of memory allocations of live objects. You can specify the gc GET parameter to run GC before taking the heap sample."
    }
    fn shape(&self) -> Shape {
        Shape::Cumulative
    }
    fn push_name(&self) -> Option<&'static str> {
        Some("memory")
    }
    fn delta_as_is(&self) -> &'static [&'static str] {
        &["inuse_objects", "inuse_space"]
    }
    fn init(&self, cfg: &Config, on: bool) -> bool {
        // Off (rate 0) too: the counters go on, and the countdown is then set far from zero.
        let rate = if on { cfg.heap_rate } else { 0 };
        init(rate);
        rate > 0
    }
    fn enabled(&self) -> bool {
        ACTIVE.load(Ordering::Relaxed)
    }
    fn paths(&self) -> &'static [Path] {
        &[
            Path {
                name: "heap",
                default_sample_type: None,
                about: None,
            },
            Path {
                name: "allocs",
                default_sample_type: Some("alloc_space"),
                about: Some("A sampling of all past memory allocations"),
            },
            Path {
                name: "delta_heap",
                default_sample_type: None,
                about: None,
            },
        ]
    }
    fn snapshot(&self, allocator_figures: bool) -> State {
        Box::new(snapshot(allocator_figures))
    }
    fn addresses(&self, s: &State, out: &mut Vec<u64>) {
        out.extend(
            state::<HeapState>(s)
                .buckets
                .iter()
                .flat_map(|b| b.stack.iter().copied()),
        );
    }
    fn profiles(
        &self,
        s: &State,
        cx: &Context,
        sym: &mut Symbolizer,
    ) -> Vec<(&'static str, Profile)> {
        let h = state::<HeapState>(s);
        let mut out = vec![("heap", heap_profile(h, sym))];
        if let Some(peak) = heap_peak_profile(h, sym, cx.process_start_mono_ns) {
            out.push(("heap-peak", peak));
        }
        out
    }
    fn profile(&self, s: &State, _cx: &Context, sym: &mut Symbolizer) -> Profile {
        heap_profile(state::<HeapState>(s), sym)
    }
    fn text(&self, s: &State, _debug: i64, sym: &mut Symbolizer) -> Option<String> {
        Some(heap_text(state::<HeapState>(s), sym))
    }
    fn recorded(&self, s: &State) -> u64 {
        state::<HeapState>(s).buckets.iter().map(|b| b.allocs).sum()
    }
    fn is_empty(&self) -> bool {
        is_empty()
    }
    fn count(&self) -> Option<usize> {
        Some(bucket_count())
    }
    fn pin_unloadable(&self, sym: &mut Symbolizer) {
        pin_unloadable(sym);
    }
    fn fork_locks(&self) -> &'static [&'static dyn RawLock] {
        static LOCKS: [&dyn RawLock; 2] = [&TABLE, &MORE_BLOCKS];
        &LOCKS
    }
    fn reset_after_fork(&self) {
        reset_after_fork();
    }
    fn summary(&self) -> Option<(LogLevel, String)> {
        if !self.enabled() {
            return None;
        }
        let (looked_up, sampled, samples) = table_figures()?;
        Some((
            LogLevel::Debug,
            format!(
                "heap: {looked_up} of {} frees passed the slot test and were looked up ({sampled} were sampled blocks); the others took no lock; {} of {samples} sampled stacks (and lock waits') were walked in full, the others from the unwinder's rule cache",
                totals().1,
                crate::kinds::stack::full_walks(),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// The tests that use the one TABLE take turns.
    static TABLE_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn scaling_is_unbiased_for_small_and_large_sizes() {
        let rate = 512 * 1024;
        // A 16-byte block is sampled with probability ~16/rate: one sample stands for ~rate/16.
        let small = scaled(
            &Bucket {
                stack: Vec::new().into(),
                size: 16,
                allocs: 1,
                frees: 0,
                weight: 0,
            },
            rate,
        );
        assert!((small[0] - rate as i64 / 16).abs() <= 1, "{small:?}");
        // A block far larger than the rate is always sampled: no scaling.
        let big = scaled(
            &Bucket {
                stack: Vec::new().into(),
                size: 64 << 20,
                allocs: 2,
                frees: 1,
                weight: 0,
            },
            rate,
        );
        assert_eq!(big, [2, 2 * (64 << 20), 1, 64 << 20]);
        // Rate 1 records every allocation, unscaled.
        let every = scaled(
            &Bucket {
                stack: Vec::new().into(),
                size: 100,
                allocs: 3,
                frees: 3,
                weight: 0,
            },
            1,
        );
        assert_eq!(every, [3, 300, 0, 0]);
    }

    #[test]
    fn distinct_stacks_are_capped_with_an_overflow_bucket() {
        let _turn = TABLE_TESTS.lock();
        *TABLE.lock() = Some(HeapTable::default());
        for i in 0..MAX_BUCKETS as u64 + 100 {
            record(0x10_0000 + i as usize * 16, 32, &[0x1000 + i, 0x2000]);
        }
        let t = TABLE.lock().take().unwrap();
        assert_eq!(
            t.buckets.len(),
            MAX_BUCKETS + 1,
            "one overflow bucket for size 32"
        );
        let overflow = t.buckets.iter().find(|b| b.stack.is_empty()).unwrap();
        assert_eq!((overflow.size, overflow.allocs), (32, 100));
        assert_eq!(
            t.live.len(),
            MAX_BUCKETS + 100,
            "every block is still tracked"
        );
        for (w, good) in SLOT_BITS.iter().zip(&SLOTS_FOR_GOOD) {
            w.store(good.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// The peak keeps the counts of the highest in-use estimate (within the margin), and
    /// frees after it do not change it.
    #[test]
    fn the_peak_is_the_highest_in_use_estimate() {
        let _turn = TABLE_TESTS.lock();
        // Rate 0 here (heap off in unit tests): every sample weighs its size.
        *TABLE.lock() = Some(HeapTable::default());
        for i in 0..100 {
            record(0x4000_0000 + i * 4096, 1000, &[0x1000]);
        }
        for i in 0..100 {
            free_slow(0x4000_0000 + i * 4096);
        }
        record(0x5000_0000, 10, &[0x2000]);
        let (buckets, kept) = peak().unwrap();
        // Kept at the first free after the maximum: exactly the maximum.
        assert_eq!(kept.bytes, 100_000);
        let first = buckets.iter().find(|b| b.size == 1000).unwrap();
        assert_eq!(first.frees, 0);
        assert_eq!(first.allocs * 1000, kept.bytes);
        assert!(buckets
            .iter()
            .find(|b| b.size == 10)
            .is_none_or(|b| b.allocs == 0));
        // A lower second hump leaves the peak; a higher one is the heap as it is now.
        for i in 0..50 {
            record(0x6000_0000 + i * 4096, 1000, &[0x3000]);
        }
        assert_eq!(peak().unwrap().1.bytes, 100_000);
        for i in 50..200 {
            record(0x6000_0000 + i * 4096, 1000, &[0x3000]);
        }
        let (buckets, now) = peak().unwrap();
        assert_eq!(now.bytes, 200_010);
        assert_eq!(buckets.iter().map(|b| b.allocs - b.frees).sum::<u64>(), 201);
        let t = TABLE.lock().take().unwrap();
        assert_eq!(t.live_bytes, 200_010);
        for (w, good) in SLOT_BITS.iter().zip(&SLOTS_FOR_GOOD) {
            w.store(good.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    #[test]
    fn the_logarithm_is_close_to_libms() {
        let mut x = 1.0 / (1u64 << 53) as f64;
        while x <= 1.0 {
            for k in [1.0, 1.1, 1.3, 1.5, 1.7, 1.9, 1.99] {
                let v = x * k;
                if v <= 1.0 {
                    assert!((ln(v) - libm::log(v)).abs() < 2e-5, "{v}");
                }
            }
            x *= 2.0;
        }
    }

    #[test]
    fn gaps_are_exponential_with_the_rate_as_mean() {
        // RATE is global: the table tests weigh samples by it.
        let _turn = TABLE_TESTS.lock();
        RATE.store(1000, Ordering::Relaxed);
        let t = ThreadState {
            block: Cell::new(UNCLAIMED_OFFSET),
            held: Cell::new(false),
            seeded: Cell::new(true),
            stack_looked_up: Cell::new(false),
            rng: Cell::new(12345),
            stack_lo: Cell::new(0),
            stack_hi: Cell::new(0),
        };
        let n = 100_000;
        let gaps: Vec<i64> = (0..n).map(|_| next_gap(&t)).collect();
        let mean = gaps.iter().sum::<i64>() as f64 / n as f64;
        // Standard error of the mean of an exponential: rate/sqrt(n) ≈ 3.2; allow 5 of them.
        assert!((mean - 1000.0).abs() < 16.0, "mean {mean}");
        let below = gaps.iter().filter(|&&g| g < 693).count() as f64 / n as f64;
        assert!((below - 0.5).abs() < 0.01, "median fraction {below}");
        RATE.store(0, Ordering::Relaxed);
    }
}
