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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use crate::signal_safe::fast_hash::FastHash;
use crate::runtime::guard::Guard;
use crate::kinds::stack::{self, OwnFrames};
use crate::symbols::symbolize::{self, Symbolizer};
use crate::signal_safe::lock::{store_changed, Lock};
use crate::signal_safe::thread_state::{self, ThreadState};

/// Mean bytes between samples; 0 while heap profiling is off.
static RATE: AtomicU64 = AtomicU64::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Heap profiling is off for good (before `init`, neither flag is set).
static OFF: AtomicBool = AtomicBool::new(false);

/// Distinct (stack, size) buckets kept; beyond that, samples go to one bucket per size
/// under a synthetic frame. Buckets are split by size, so a program with many sizes has
/// many per stack: each bucket shares its stack with the others of that stack (about 70
/// bytes a bucket with its index), so a million of them take about 70 MB, and come only
/// from as many samples (Go keeps every bucket, with no bound at all).
const MAX_BUCKETS: usize = 1 << 20;
const SLOTS: usize = 1 << 16;
pub const SLOT_WORDS: usize = SLOTS / 64;

/// Exact counts of one thread at a time. A thread claims a block at its first allocation
/// or free and writes it (plain loads and stores, no locked instruction) until the thread
/// is gone: also after its exit hook, since later thread-exit destructors still free
/// memory. A block passes to a new thread only once its previous owner no longer exists,
/// keeping its counts: totals are sums over every block ever used.
#[repr(C, align(64))]
pub struct Counters {
    /// Bytes left before the next heap sample; negative: the next call takes the general
    /// path (a sample is due, or heap profiling has not started yet).
    countdown: AtomicI64,
    /// With `countdown`, the bytes requested so far: `base - countdown`. Each allocation
    /// only runs the countdown down, and each reset of the countdown moves `base` by as
    /// much (`set_countdown`), so the malloc hook writes two counters, not three. The two
    /// words form one 16-byte unit, written and read whole (`pair`, `set_countdown`).
    base: AtomicU64,
    mallocs: AtomicU64,
    frees: AtomicU64,
    /// Kernel thread id of the writer; 0 while never used.
    owner: AtomicI32,
    /// The owner has passed its exit hook: worth checking whether it is gone.
    retiring: AtomicBool,
}

/// The processor has cmpxchg16b (set at load, by `init`).
static HAS_CX16: AtomicBool = AtomicBool::new(false);

/// `lock cmpxchg16b` at `p`: `new` if it held `old`; returns what it held.
///
/// # Safety
/// The CPU has cmpxchg16b; `p` is 16-byte aligned and valid for 16 bytes.
unsafe fn cas_pair(p: *mut u128, old: u128, new: u128) -> u128 {
    let (lo, hi): (u64, u64);
    // SAFETY: as the caller promises. rbx (reserved by the compiler) holds the new value's
    // low half only during the instruction, and is restored.
    unsafe {
        std::arch::asm!(
            "xchg {new_lo}, rbx",
            "lock cmpxchg16b xmmword ptr [{p}]",
            "mov rbx, {new_lo}",
            p = in(reg) p,
            new_lo = inout(reg) new as u64 => _,
            in("rcx") (new >> 64) as u64,
            inout("rax") old as u64 => lo,
            inout("rdx") (old >> 64) as u64 => hi,
            options(nostack),
        )
    };
    (lo as u128) | ((hi as u128) << 64)
}

impl Counters {
    /// Adds to a counter of the calling thread's own block: one writer, so a plain load and
    /// store suffice.
    #[inline(always)]
    fn add(field: &AtomicU64, n: u64) {
        field.store(
            field.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    const fn new() -> Self {
        Counters::with_countdown(-1)
    }

    /// The bytes requested so far, exact whenever it is read: another thread's reset of
    /// its countdown is never seen halfway.
    fn bytes(&self) -> u64 {
        let (countdown, base) = self.pair();
        base.wrapping_sub(countdown as u64)
    }

    /// The (countdown, base) pair as one 16-byte unit (countdown in the low half).
    fn pair_ptr(&self) -> *mut u128 {
        &self.countdown as *const AtomicI64 as *mut u128
    }

    /// (countdown, base), read as one 16-byte unit.
    fn pair(&self) -> (i64, u64) {
        if HAS_CX16.load(Ordering::Relaxed) {
            // SAFETY: the CPU has cmpxchg16b (checked at load); the pair is 16-byte aligned
            // (`Counters` is 64-aligned, countdown first, then base).
            let v = unsafe { cas_pair(self.pair_ptr(), 0, 0) };
            return (v as u64 as i64, (v >> 64) as u64);
        }
        (
            self.countdown.load(Ordering::Acquire),
            self.base.load(Ordering::Acquire),
        )
    }

    /// Sets the countdown of the calling thread's own block, keeping the bytes requested as
    /// they are: `base` moves by as much, in the same atomic write (a reader, or a signal
    /// handler on this thread, sees both words before or both after).
    fn set_countdown(&self, new: i64) {
        let cur = self.countdown.load(Ordering::Relaxed);
        let base = self.base.load(Ordering::Relaxed);
        let new_base = base.wrapping_add(new.wrapping_sub(cur) as u64);
        if HAS_CX16.load(Ordering::Relaxed) {
            let pack = |c: i64, b: u64| (c as u64 as u128) | ((b as u128) << 64);
            // SAFETY: as in `pair`. Only this thread changes the pair (readers' exchanges
            // write back what they read), so the exchange succeeds at once.
            unsafe { cas_pair(self.pair_ptr(), pack(cur, base), pack(new, new_base)) };
            return;
        }
        // Without cmpxchg16b (the first AMD64 processors only), a reader may see the new
        // base with the old countdown.
        self.base.store(new_base, Ordering::Release);
        self.countdown.store(new, Ordering::Release);
    }

    const fn with_countdown(countdown: i64) -> Self {
        Counters {
            countdown: AtomicI64::new(countdown),
            base: AtomicU64::new(countdown as u64),
            mallocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            owner: AtomicI32::new(0),
            retiring: AtomicBool::new(false),
        }
    }

    /// Takes this block for thread `tid` if it was never used, or if its owner has exited
    /// and is gone.
    fn try_claim(&self, tid: i32) -> bool {
        if self
            .owner
            .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
        if !self.retiring.load(Ordering::Acquire)
            || crate::signal_safe::sys::thread_exists(self.owner.load(Ordering::Relaxed))
        {
            return false;
        }
        let won = self
            .retiring
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if won {
            self.owner.store(tid, Ordering::Release);
        }
        won
    }
}

static BLOCKS: [Counters; 1024] = [const { Counters::new() }; 1024];
/// What the malloc and free hooks reach from one address (`HOT`, whose address they load
/// once): the counter blocks that are not a thread's own, at fixed offsets, and the slot
/// bitmap. A thread's `block` is the offset of its counter block from here.
#[repr(C)]
pub struct Hot {
    /// What a thread writes before it has a block (offset 0, so a thread's zeroed state
    /// designates it): its countdown stays far below zero (racy writes from several
    /// threads only subtract), so every malloc takes the general path, which claims a
    /// block. Its frees are summed (a thread may free before it ever allocates; threads
    /// started by `pthread_create` have their block from the start, so only threads made
    /// otherwise, as Go's runtime makes them, count here, where two such threads freeing at
    /// the same instant could lose one count); its mallocs are not (they are counted again
    /// in the block claimed).
    unclaimed: Counters,
    /// What a thread writes while rprof works on it: its countdown stays far above zero,
    /// so rprof's own allocations take the unsampled path. Never summed.
    discard: Counters,
    /// One bit per slot (see `slot_bit`). Slot 0 (the null pointer's) is marked from the
    /// start: `free(NULL)` takes the general path, so the unsampled one needs no test for
    /// it.
    slot_bits: [AtomicU64; SLOT_WORDS],
}

pub static HOT: Hot = Hot {
    unclaimed: Counters::with_countdown(i64::MIN / 2),
    discard: Counters::with_countdown(i64::MAX / 2),
    slot_bits: slots_marked_for_null(),
};
static SLOT_BITS: &[AtomicU64; SLOT_WORDS] = &HOT.slot_bits;
/// `ThreadState::block` for `HOT.unclaimed` and `HOT.discard`.
pub const UNCLAIMED_OFFSET: isize = std::mem::offset_of!(Hot, unclaimed) as isize;
pub const DISCARD_OFFSET: isize = std::mem::offset_of!(Hot, discard) as isize;
/// For the hooks' assembly: where the fields they write lie.
pub const SLOT_BITS_OFFSET: usize = std::mem::offset_of!(Hot, slot_bits);
pub const MALLOCS_OFFSET: usize = std::mem::offset_of!(Counters, mallocs);
pub const FREES_OFFSET: usize = std::mem::offset_of!(Counters, frees);
const COUNTDOWN_OFFSET: usize = std::mem::offset_of!(Counters, countdown);
const _: () = assert!(
    UNCLAIMED_OFFSET == 0
        && SLOTS == 1 << 16
        && COUNTDOWN_OFFSET == 0
        && std::mem::offset_of!(Counters, base) == 8
);

/// Blocks at and above this one were never claimed: a fork child's reset stops there, so
/// that it reads (and faults in) no page nobody used.
static BLOCKS_USED: AtomicUsize = AtomicUsize::new(0);
/// Some bit of SLOT_BITS was ever set (else a fork child need not look at them).
static PAGES_MARKED: AtomicBool = AtomicBool::new(false);
/// Blocks beyond the static ones (more than 1024 threads alive at once); never freed.
/// Held by fork's prepare handler.
pub static MORE_BLOCKS: Lock<Vec<&'static Counters>> = Lock::new(Vec::new());

/// Slots whose bit stays set whatever the table says (see `mark_for_good`).
static SLOTS_FOR_GOOD: [AtomicU64; SLOT_WORDS] = slots_marked_for_null();

const fn slots_marked_for_null() -> [AtomicU64; SLOT_WORDS] {
    let mut words = [const { AtomicU64::new(0) }; SLOT_WORDS];
    words[0] = AtomicU64::new(1);
    words
}
/// Frees that passed the slot test and were looked up under the lock, and how many of
/// those were sampled blocks: the measure of the cheap test's worth.
static FREES_LOOKED_UP: AtomicU64 = AtomicU64::new(0);
/// In a fork child: the blocks live in the process when it forked (the parent's Mallocs −
/// Frees, its own inherited count included), which the child's heap still holds.
static OBJECTS_AT_FORK: AtomicU64 = AtomicU64::new(0);
static FREES_OF_SAMPLES: AtomicU64 = AtomicU64::new(0);

/// Sampled allocations folded by (stack, size), and the sampled blocks still live.
#[derive(Default)]
pub struct HeapTable {
    /// One copy of each distinct stack, shared by its buckets.
    stacks: std::collections::HashSet<std::sync::Arc<[u64]>, FastHash>,
    /// The buckets by the hash of (stack, size): the first of a chain linked by `chain`.
    index: HashMap<u64, u32, FastHash>,
    /// For each bucket, the next with the same hash (NO_BUCKET: none).
    chain: Vec<u32>,
    pub buckets: Vec<Bucket>,
    live: HashMap<usize, u32, FastHash>,
    /// Live sampled blocks per slot (the bit in SLOT_BITS is set while non-zero).
    slot_counts: HashMap<usize, u32, FastHash>,
    /// Buckets holding an address in code that a dlclose may unmap, not yet pinned.
    unpinned: Vec<u32>,
    /// Estimated in-use bytes now: the sum of the weights of the live sampled blocks.
    live_bytes: u64,
    /// The highest `live_bytes` so far, and when it was reached (CLOCK_MONOTONIC ns).
    max_bytes: u64,
    max_mono_ns: u64,
    /// The heap as it stood at a past maximum (see `note_fall`).
    peak: Option<Peak>,
}

/// The heap profile at its peak: each bucket's (allocs, frees) at that moment, by index.
#[derive(Clone, Default)]
pub struct Peak {
    /// Estimated in-use bytes then.
    pub bytes: u64,
    /// When, in Unix and CLOCK_MONOTONIC nanoseconds.
    pub unix_ns: i64,
    pub mono_ns: u64,
    pub counts: Vec<(u64, u64)>,
}

/// The buckets' counts are copied at a maximum of the in-use estimate (the first sampled
/// free after it) only when it passes the last peak kept by this fraction (1/16): the peak
/// written is the highest, or within 6.25 % of it, and a heap rising from one sample to N
/// bytes in any saw-tooth is copied at most log(N)/log(1.0625) times.
const PEAK_MARGIN_SHIFT: u32 = 4;

/// Counts of sampled events (not yet scaled) for one stack and size. An empty stack is
/// the overflow bucket of that size.
#[derive(Clone)]
pub struct Bucket {
    /// Shared by every bucket of this stack (the table keeps one copy of each stack).
    pub stack: std::sync::Arc<[u64]>,
    pub size: u64,
    pub allocs: u64,
    pub frees: u64,
    /// The bytes one live sample of this bucket stands for (size, unbiased).
    pub weight: u64,
}

/// Guards the table; taken on the sampled path, on frees of sampled pages, by dumps and by
/// fork's prepare handler.
pub static TABLE: Lock<Option<HeapTable>> = Lock::new(None);

/// Starts heap profiling at `rate` bytes per sample (0 leaves it off).
pub fn init(rate: u64) {
    HAS_CX16.store(
        std::arch::is_x86_feature_detected!("cmpxchg16b"),
        Ordering::Relaxed,
    );
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

/// The slot of a block's address, as (word index, bit mask): its 256-byte granule, modulo
/// 64 Ki granules (16 MiB). Neighbouring blocks share a word, so a heap freed in random
/// order touches 1/2048 of its size in bitmap (a hash of the address measured 8 % slower
/// on a 2 MB heap: every free missed the cache).
#[inline(always)]
fn slot_bit(p: usize) -> (usize, u64) {
    let slot = (p >> 8) & (SLOTS - 1);
    (slot / 64, 1u64 << (slot % 64))
}

#[inline(always)]
fn slot_marked(p: usize) -> bool {
    let (w, bit) = slot_bit(p);
    SLOT_BITS[w].load(Ordering::Relaxed) & bit != 0
}

/// Sends every free of `p` (and of what shares its slot) down the general path for good.
/// Async-signal-safe: for the bootstrap pool's pointers, handed out while the allocator is
/// looked up.
pub fn mark_for_good(p: *mut libc::c_void) {
    let (w, bit) = slot_bit(p as usize);
    SLOTS_FOR_GOOD[w].fetch_or(bit, Ordering::Relaxed);
    // PAGES_MARKED stays as it is: a fork child keeps these bits as they are.
    SLOT_BITS[w].fetch_or(bit, Ordering::Relaxed);
}

/// The block a thread-state offset designates.
#[inline(always)]
fn block_at(b: isize) -> &'static Counters {
    // SAFETY: `ThreadState::block` only ever holds the offset from HOT of a static block
    // (in HOT or BLOCKS) or a leaked one (MORE_BLOCKS).
    unsafe { &*((&HOT as *const Hot as *const u8).wrapping_offset(b) as *const Counters) }
}

/// The offset from HOT that designates `c` in `ThreadState::block`.
fn offset_of_block(c: &'static Counters) -> isize {
    (c as *const Counters as isize).wrapping_sub(&HOT as *const Hot as isize)
}

/// The calling thread's counter block, claimed on first use (DISCARD while held).
#[inline(always)]
fn counters(t: &ThreadState) -> &'static Counters {
    let b = t.block.get();
    if b != UNCLAIMED_OFFSET {
        return block_at(b);
    }
    claim_counters(t)
}

/// Gives the calling thread its counter block now (when it starts).
pub fn claim_counters_now() {
    thread_state::with(|t| {
        counters(t);
    });
}

#[cold]
#[inline(never)]
fn claim_counters(t: &ThreadState) -> &'static Counters {
    let tid = crate::signal_safe::sys::gettid();
    let c = match BLOCKS.iter().position(|c| c.try_claim(tid)) {
        Some(i) => {
            BLOCKS_USED.fetch_max(i + 1, Ordering::AcqRel);
            &BLOCKS[i]
        }
        None => {
            // Allocating here re-enters malloc: hold the guard so that it passes through.
            let _g = Guard::enter();
            let mut more = MORE_BLOCKS.lock();
            match more.iter().find(|c| c.try_claim(tid)) {
                Some(c) => *c,
                None => {
                    let c: &'static Counters = Box::leak(Box::new(Counters::new()));
                    c.owner.store(tid, Ordering::Relaxed);
                    more.push(c);
                    c
                }
            }
        }
    };
    t.block.set(offset_of_block(c));
    c
}

/// After the malloc hook took the countdown below zero for an allocation of `size`: true
/// if it is to be sampled (pass it to `sample`). The thread may have had no block yet (the
/// counts went to UNCLAIMED): it is claimed and counted now.
#[cold]
#[inline(never)]
pub fn after_fast_count(size: usize) -> bool {
    thread_state::with(|t| {
        if t.held.get() {
            return false;
        }
        if t.block.get() == UNCLAIMED_OFFSET {
            return count_in(claim_counters(t), size);
        }
        true
    })
}

/// Counts an allocation of `size` bytes in `c` and runs down its sampling countdown: true
/// if this allocation is to be sampled.
#[inline(always)]
fn count_in(c: &Counters, size: usize) -> bool {
    Counters::add(&c.mallocs, 1);
    // The countdown never goes negative on a zero size (it is reset to ≥ 0), and stays far
    // from it while heap profiling is off (see `sample_slow`).
    let left = c
        .countdown
        .load(Ordering::Relaxed)
        .wrapping_sub(size as i64);
    c.countdown.store(left, Ordering::Relaxed);
    left < 0
}

/// Counts an allocation call of `size` bytes by the program, before it is made; true if
/// the block is to be sampled (the caller then passes it to `sample`). No lock, no system
/// call, no stack frame needed: the hooks tail-call the real function when this is false.
#[inline(always)]
pub fn count_alloc(size: usize) -> bool {
    thread_state::with(|t| {
        if t.held.get() {
            return false;
        }
        count_in(counters(t), size)
    })
}

/// After an allocation of `size` bytes at `p` (null: it failed) by the program: counts it
/// and samples it if its turn has come.
#[inline(always)]
pub fn on_alloc(p: *mut libc::c_void, size: usize) {
    if !p.is_null() && count_alloc(size) {
        sample(p, size);
    }
}

/// As `sample`, from malloc's entry: `sp` and `bp` as they were there (see
/// `stack::with_stack_from_call`).
#[cold]
#[inline(never)]
pub fn sample_from_call(p: *mut libc::c_void, size: usize, sp: u64, bp: u64) {
    if !p.is_null() {
        thread_state::with(|t| sample_slow(t, p as usize, size as u64, Some((sp, bp))));
    }
}

/// The block `p` (null if the allocation failed) of `size` bytes, for which `count_alloc`
/// returned true.
#[cold]
#[inline(never)]
pub fn sample(p: *mut libc::c_void, size: usize) {
    if !p.is_null() {
        thread_state::with(|t| sample_slow(t, p as usize, size as u64, None));
    }
}

/// Before the program frees `p` (not null).
#[inline(always)]
pub fn on_free(p: *mut libc::c_void) {
    on_free_undoable(p);
}

/// What `on_free_undoable` did, for `undo_free`.
pub struct FreeDone {
    counted: bool,
    sample: Option<u32>,
}

/// `on_free`, returning what it did so that a realloc that fails can undo it.
pub fn on_free_undoable(p: *mut libc::c_void) -> FreeDone {
    let counted = thread_state::with(|t| {
        if t.held.get() {
            return false;
        }
        Counters::add(&counters(t).frees, 1);
        true
    });
    let sample = if counted && slot_marked(p as usize) {
        free_slow(p as usize)
    } else {
        None
    };
    FreeDone { counted, sample }
}

/// `p` was not freed after all (a realloc failed and left it as it was): count it and
/// track it again.
#[cold]
#[inline(never)]
pub fn undo_free(p: *mut libc::c_void, done: FreeDone) {
    if done.counted {
        thread_state::with(|t| Counters::add(&counters(t).frees, u64::MAX));
    }
    let Some(b) = done.sample else { return };
    let Some(_g) = Guard::enter() else { return };
    let mut guard = TABLE.lock();
    let Some(table) = guard.as_mut() else { return };
    if let Some(bucket) = table.buckets.get_mut(b as usize) {
        bucket.frees -= 1;
    }
    track_live(table, p as usize, b);
    note_rise(table);
}

/// The next gap in bytes: exponential with mean `rate` (0 for rate ≤ 1: every allocation).
fn next_gap(t: &ThreadState) -> i64 {
    let rate = RATE.load(Ordering::Relaxed);
    if rate <= 1 {
        return 0;
    }
    // xorshift64*; 53 random bits make u in (0, 1].
    let mut x = t.rng.get();
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t.rng.set(x);
    let bits = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
    let u = (bits as f64 + 1.0) / (1u64 << 53) as f64;
    (-ln(u) * rate as f64).min(1e15) as i64
}

/// The natural logarithm of a positive normal `x`, within 2e-5: ample for drawing gaps,
/// and without the tables of libm's `log`, whose cache misses cost more than the rest of
/// a sample's bookkeeping.
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    // The mantissa as m in [1, 2); ln(m) = 2 atanh(t) with t = (m - 1) / (m + 1) < 1/3.
    let m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let ln_m = 2.0 * t * (1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0))));
    exponent as f64 * std::f64::consts::LN_2 + ln_m
}

#[cold]
#[inline(never)]
fn sample_slow(t: &ThreadState, p: usize, size: u64, entry: Option<(u64, u64)>) {
    let c = counters(t);
    if !ACTIVE.load(Ordering::Relaxed) {
        if OFF.load(Ordering::Relaxed) {
            // Counting goes on; sampling never comes back here.
            c.set_countdown(i64::MAX / 2);
        }
        // Before `init` (allocations in other libraries' constructors): not sampled, and
        // the countdown stays negative so that the first allocation after it starts one.
        return;
    }
    if !t.seeded.get() {
        // The first allocation of a thread starts its countdown instead of always sampling.
        t.seeded.set(true);
        let seed = crate::signal_safe::sys::monotonic_ns()
            ^ (crate::signal_safe::sys::gettid() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        t.rng.set(seed | 1);
        let left = next_gap(t) - size as i64;
        c.set_countdown(left);
        if left >= 0 {
            return;
        }
    }
    c.set_countdown(next_gap(t));
    let Some(_g) = Guard::enter() else { return };
    match entry {
        Some((sp, bp)) => stack::with_stack_from_call(sp, bp, |stack| record(p, size, stack)),
        None => record(p, size, &stack::capture(OwnFrames::Drop)),
    }
}

const NO_BUCKET: u32 = u32::MAX;

fn key_hash(stack: &[u64], size: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = FastHash.build_hasher();
    for &pc in stack {
        h.write_u64(pc);
    }
    h.write_u64(size);
    h.finish()
}

impl HeapTable {
    fn find(&self, stack: &[u64], size: u64, hash: u64) -> Option<u32> {
        let mut i = *self.index.get(&hash)?;
        while i != NO_BUCKET {
            let b = &self.buckets[i as usize];
            if b.size == size && *b.stack == *stack {
                return Some(i);
            }
            i = self.chain[i as usize];
        }
        None
    }

    /// The table's one copy of `stack`, made now if it has none.
    fn shared_stack(&mut self, stack: &[u64]) -> std::sync::Arc<[u64]> {
        if let Some(s) = self.stacks.get(stack) {
            return s.clone();
        }
        let s: std::sync::Arc<[u64]> = stack.into();
        self.stacks.insert(s.clone());
        s
    }

    fn link(&mut self, i: u32, hash: u64) {
        self.chain[i as usize] = self.index.insert(hash, i).unwrap_or(NO_BUCKET);
    }

    fn unlink(&mut self, i: u32, hash: u64) {
        let next = self.chain[i as usize];
        let Some(&head) = self.index.get(&hash) else {
            return;
        };
        if head == i {
            if next == NO_BUCKET {
                self.index.remove(&hash);
            } else {
                self.index.insert(hash, next);
            }
            return;
        }
        let mut at = head;
        while at != NO_BUCKET {
            if self.chain[at as usize] == i {
                self.chain[at as usize] = next;
                return;
            }
            at = self.chain[at as usize];
        }
    }
}

fn record(p: usize, size: u64, stack: &[u64]) {
    let mut guard = TABLE.lock();
    let Some(table) = guard.as_mut() else { return };
    let stack = if table.buckets.len() >= MAX_BUCKETS {
        &[][..]
    } else {
        stack
    };
    let hash = key_hash(stack, size);
    let b = match table.find(stack, size, hash) {
        Some(b) => b,
        None => {
            let b = table.buckets.len() as u32;
            if stack.iter().any(|&pc| symbolize::may_unload(pc)) {
                table.unpinned.push(b);
            }
            let shared = table.shared_stack(stack);
            table.buckets.push(Bucket {
                stack: shared,
                size,
                allocs: 0,
                frees: 0,
                weight: (size as f64 * scale(size, rate())).round() as u64,
            });
            table.chain.push(NO_BUCKET);
            table.link(b, hash);
            b
        }
    };
    table.buckets[b as usize].allocs += 1;
    track_live(table, p, b);
    note_rise(table);
}

/// After the in-use estimate rose: notes a new running maximum and when it was reached.
fn note_rise(table: &mut HeapTable) {
    if table.live_bytes > table.max_bytes {
        table.max_bytes = table.live_bytes;
        table.max_mono_ns = crate::signal_safe::sys::monotonic_ns();
    }
}

/// Before the in-use estimate falls: if it stands at its running maximum and that passes
/// the peak kept by the margin, the buckets' counts of this moment are the new peak.
fn note_fall(table: &mut HeapTable) {
    let kept = table.peak.as_ref().map_or(0, |p| p.bytes);
    if table.live_bytes == table.max_bytes && table.live_bytes > kept + (kept >> PEAK_MARGIN_SHIFT)
    {
        let mut peak = table.peak.take().unwrap_or_default();
        fill_peak(table, &mut peak);
        table.peak = Some(peak);
    }
}

/// The Unix time of a CLOCK_MONOTONIC reading of this boot, in nanoseconds.
fn unix_ns_of(mono_ns: u64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let ago = crate::signal_safe::sys::monotonic_ns().saturating_sub(mono_ns);
    now - ago as i64
}

/// `peak` := the buckets' counts now, at the running maximum.
fn fill_peak(table: &HeapTable, peak: &mut Peak) {
    peak.bytes = table.live_bytes;
    peak.unix_ns = unix_ns_of(table.max_mono_ns);
    peak.mono_ns = table.max_mono_ns;
    peak.counts.clear();
    peak.counts
        .extend(table.buckets.iter().map(|b| (b.allocs, b.frees)));
}

/// Records the sampled block at `p` (of bucket `b`) as live.
fn track_live(table: &mut HeapTable, p: usize, b: u32) {
    if table.live.insert(p, b).is_none() {
        table.live_bytes += table.buckets.get(b as usize).map_or(0, |b| b.weight);
        let (w, bit) = slot_bit(p);
        *table
            .slot_counts
            .entry(w * 64 + bit.trailing_zeros() as usize)
            .or_insert(0) += 1;
        SLOT_BITS[w].fetch_or(bit, Ordering::Relaxed);
        PAGES_MARKED.store(true, Ordering::Relaxed);
    }
}

/// Takes a freed block out of the live table if it is a sample; returns its bucket.
#[cold]
#[inline(never)]
fn free_slow(p: usize) -> Option<u32> {
    let _g = Guard::enter()?;
    let mut guard = TABLE.lock();
    let table = guard.as_mut()?;
    FREES_LOOKED_UP.fetch_add(1, Ordering::Relaxed);
    let b = table.live.remove(&p)?;
    FREES_OF_SAMPLES.fetch_add(1, Ordering::Relaxed);
    note_fall(table);
    if let Some(bucket) = table.buckets.get_mut(b as usize) {
        bucket.frees += 1;
        table.live_bytes = table.live_bytes.saturating_sub(bucket.weight);
    }
    let (w, bit) = slot_bit(p);
    let key = w * 64 + bit.trailing_zeros() as usize;
    if let Some(n) = table.slot_counts.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            table.slot_counts.remove(&key);
            if SLOTS_FOR_GOOD[w].load(Ordering::Relaxed) & bit == 0 {
                SLOT_BITS[w].fetch_and(!bit, Ordering::Relaxed);
            }
        }
    }
    Some(b)
}

/// The calling thread is exiting: its block may pass to a new thread once it is gone.
pub fn release_thread() {
    thread_state::with(|t| {
        let b = t.block.get();
        if b != UNCLAIMED_OFFSET && b != DISCARD_OFFSET {
            block_at(b).retiring.store(true, Ordering::Release);
        }
    });
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
    let mine: *const Counters = thread_state::with(|t| block_at(t.block.get()));
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
    store_changed!(HOT.unclaimed.frees, 0);
    store_changed!(FREES_LOOKED_UP, 0);
    store_changed!(FREES_OF_SAMPLES, 0);
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

/// (frees looked up under the lock, of which frees of sampled blocks).
pub fn free_lookups() -> (u64, u64) {
    (
        FREES_LOOKED_UP.load(Ordering::Relaxed),
        FREES_OF_SAMPLES.load(Ordering::Relaxed),
    )
}

/// No allocation was ever sampled (checked without copying the buckets).
pub fn is_empty() -> bool {
    TABLE.lock().as_ref().is_none_or(|t| t.buckets.is_empty())
}

/// Allocations sampled since the start (not scaled).
pub fn sampled_allocations() -> u64 {
    TABLE
        .lock()
        .as_ref()
        .map_or(0, |t| t.buckets.iter().map(|b| b.allocs).sum())
}

/// How many buckets the heap profile has.
pub fn bucket_count() -> usize {
    TABLE.lock().as_ref().map_or(0, |t| t.buckets.len())
}

/// Every address on the buckets' stacks, once each.
pub fn stack_addresses() -> Vec<u64> {
    let mut out: Vec<u64> = TABLE.lock().as_ref().map_or_else(Vec::new, |t| {
        t.buckets
            .iter()
            .flat_map(|b| b.stack.iter().copied())
            .collect()
    });
    out.sort_unstable();
    out.dedup();
    out
}

/// A copy of the buckets, for writing a profile outside the lock.
pub fn buckets() -> Vec<Bucket> {
    TABLE
        .lock()
        .as_ref()
        .map(|t| t.buckets.clone())
        .unwrap_or_default()
}

/// The heap at its peak so far: the buckets with their counts of that moment, and the
/// moment (None before any sample).
pub fn peak() -> Option<(Vec<Bucket>, Peak)> {
    let guard = TABLE.lock();
    let table = guard.as_ref()?;
    let kept = table.peak.as_ref().map_or(0, |p| p.bytes);
    if table.max_bytes == 0 {
        return None;
    }
    if table.live_bytes == table.max_bytes && table.live_bytes > kept {
        // Standing at the maximum now: the heap as it is.
        let mut now = Peak::default();
        fill_peak(table, &mut now);
        now.counts = Vec::new();
        return Some((table.buckets.clone(), now));
    }
    let peak = table.peak.as_ref()?;
    let buckets = table
        .buckets
        .iter()
        .zip(&peak.counts)
        .map(|(b, &(allocs, frees))| Bucket {
            allocs,
            frees,
            ..b.clone()
        })
        .collect();
    Some((
        buckets,
        Peak {
            counts: Vec::new(),
            ..peak.clone()
        },
    ))
}

/// Before a dlclose: resolves addresses of unloadable code in the buckets while mapped.
/// Only the buckets made since the last time are looked at: the cost does not grow with
/// the samples taken so far.
///
/// The addresses are gathered under the table's lock but resolved without it: resolving
/// calls dl_iterate_phdr, which waits for the loader's write lock, and a thread inside
/// dlclose holds that lock while it frees blocks (a sampled one takes the table's lock).
/// Buckets made meanwhile are pinned in another round (the library is still mapped:
/// another dlclose waits for the symbolizer, which the caller holds).
pub fn pin_unloadable(symbolizer: &mut Symbolizer) {
    for _round in 0..PIN_ROUNDS {
        let (fresh, addrs) = {
            let mut guard = TABLE.lock();
            let Some(table) = guard.as_mut() else { return };
            if table.unpinned.is_empty() {
                return;
            }
            let fresh = std::mem::take(&mut table.unpinned);
            let addrs: Vec<u64> = fresh
                .iter()
                .flat_map(|&b| table.buckets[b as usize].stack.iter().copied())
                .filter(|&pc| symbolize::needs_pinning(pc))
                .collect();
            (fresh, addrs)
        };
        let ids = symbolizer.pin(addrs);
        let mut guard = TABLE.lock();
        let Some(table) = guard.as_mut() else { return };
        for b in fresh {
            let bucket = &table.buckets[b as usize];
            let old = key_hash(&bucket.stack, bucket.size);
            table.unlink(b, old);
            let mut stack = table.buckets[b as usize].stack.to_vec();
            symbolize::repin(std::iter::once(&mut stack), &ids);
            let shared = table.shared_stack(&stack);
            let bucket = &mut table.buckets[b as usize];
            bucket.stack = shared;
            let new = key_hash(&bucket.stack, bucket.size);
            // Two stacks may now be equal (two loads of one library); counts stay per bucket.
            table.link(b, new);
        }
    }
}

/// At most this many rounds of pinning per dlclose (each for the buckets the program made
/// during the one before); what is left waits for the next dlclose.
pub const PIN_ROUNDS: usize = 8;

/// Unbiased estimates for a bucket, as Go's scaleHeapSample: a block of size s was sampled
/// with probability 1 − exp(−s/rate). Returns (alloc objects, alloc bytes, in-use objects,
/// in-use bytes).
pub fn scaled(b: &Bucket, rate: u64) -> [i64; 4] {
    let scale = scale(b.size, rate);
    let live = b.allocs.saturating_sub(b.frees);
    let v = |n: u64, size: u64| (n as f64 * size as f64 * scale).round() as i64;
    [
        v(b.allocs, 1),
        v(b.allocs, b.size),
        v(live, 1),
        v(live, b.size),
    ]
}

/// How many blocks of `size` one sample stands for: 1 / (1 − exp(−size/rate)).
fn scale(size: u64, rate: u64) -> f64 {
    if rate <= 1 || size == 0 {
        1.0
    } else {
        1.0 / (1.0 - libm::exp(-(size as f64) / rate as f64))
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
            rng: Cell::new(12345),
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
