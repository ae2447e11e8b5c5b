//! The exact counts the malloc and free hooks write and the slot bitmap their free test
//! reads (see `kinds::heap`): one `Counters` block per thread, reached from `HOT`.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use crate::signal_safe::lock::Lock;

pub(crate) const SLOTS: usize = 1 << 16;
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
    pub(crate) countdown: AtomicI64,
    /// With `countdown`, the bytes requested so far: `base - countdown`. Each allocation
    /// only runs the countdown down, and each reset of the countdown moves `base` by as
    /// much (`set_countdown`), so the malloc hook writes two counters, not three. The two
    /// words form one 16-byte unit, written and read whole (`pair`, `set_countdown`).
    pub(crate) base: AtomicU64,
    pub(crate) mallocs: AtomicU64,
    pub(crate) frees: AtomicU64,
    /// Kernel thread id of the writer; 0 while never used.
    pub(crate) owner: AtomicI32,
    /// The owner has passed its exit hook: worth checking whether it is gone.
    pub(crate) retiring: AtomicBool,
}

/// The processor has cmpxchg16b (set at load, by `init`).
pub(crate) static HAS_CX16: AtomicBool = AtomicBool::new(false);

/// `lock cmpxchg16b` at `p`: `new` if it held `old`; returns what it held.
///
/// # Safety
/// The CPU has cmpxchg16b; `p` is 16-byte aligned and valid for 16 bytes.
unsafe fn cas_pair(p: *mut u128, old: u128, new: u128) -> u128 {
    let (lo, hi): (u64, u64);
    // SAFETY: as the caller promises. rbx, which cmpxchg16b reads and which the compiler
    // may use itself, holds the new value's low half only during the instruction and is
    // restored. Every other operand is in a register named here, never rbx: a `reg`
    // operand may be given rbx in a function that does not keep its frame base there (it
    // was, for `p`, once this was inlined into the fork child's reset, and the exchange
    // then took the address away).
    unsafe {
        std::arch::asm!(
            "xchg rsi, rbx",
            "lock cmpxchg16b xmmword ptr [rdi]",
            "mov rbx, rsi",
            in("rdi") p,
            inout("rsi") new as u64 => _,
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
    pub(crate) fn add(field: &AtomicU64, n: u64) {
        field.store(
            field.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    pub(crate) const fn new() -> Self {
        Counters::with_countdown(-1)
    }

    /// The bytes requested so far, exact whenever it is read: another thread's reset of
    /// its countdown is never seen halfway.
    pub(crate) fn bytes(&self) -> u64 {
        let (countdown, base) = self.pair();
        base.wrapping_sub(countdown as u64)
    }

    /// The (countdown, base) pair as one 16-byte unit (countdown in the low half).
    pub(crate) fn pair_ptr(&self) -> *mut u128 {
        &self.countdown as *const AtomicI64 as *mut u128
    }

    /// (countdown, base), read as one 16-byte unit.
    pub(crate) fn pair(&self) -> (i64, u64) {
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
    pub(crate) fn set_countdown(&self, new: i64) {
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

    pub(crate) const fn with_countdown(countdown: i64) -> Self {
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
    pub(crate) fn try_claim(&self, tid: i32) -> bool {
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

pub(crate) static BLOCKS: [Counters; 1024] = [const { Counters::new() }; 1024];
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
    pub(crate) unclaimed: Counters,
    /// What a thread writes while rprof works on it: its countdown stays far above zero,
    /// so rprof's own allocations take the unsampled path. Never summed.
    pub(crate) discard: Counters,
    /// One bit per slot (see `slot_bit`). Slot 0 (the null pointer's) is marked from the
    /// start: `free(NULL)` takes the general path, so the unsampled one needs no test for
    /// it.
    pub(crate) slot_bits: [AtomicU64; SLOT_WORDS],
}

pub static HOT: Hot = Hot {
    unclaimed: Counters::with_countdown(i64::MIN / 2),
    discard: Counters::with_countdown(i64::MAX / 2),
    slot_bits: slots_marked_for_null(),
};
pub(crate) static SLOT_BITS: &[AtomicU64; SLOT_WORDS] = &HOT.slot_bits;
/// `ThreadState::block` for `HOT.unclaimed` and `HOT.discard`.
pub const UNCLAIMED_OFFSET: isize = std::mem::offset_of!(Hot, unclaimed) as isize;
pub const DISCARD_OFFSET: isize = std::mem::offset_of!(Hot, discard) as isize;
/// For the hooks' assembly: where the fields they write lie.
pub const SLOT_BITS_OFFSET: usize = std::mem::offset_of!(Hot, slot_bits);
pub const MALLOCS_OFFSET: usize = std::mem::offset_of!(Counters, mallocs);
pub const FREES_OFFSET: usize = std::mem::offset_of!(Counters, frees);
pub(crate) const COUNTDOWN_OFFSET: usize = std::mem::offset_of!(Counters, countdown);
const _: () = assert!(
    UNCLAIMED_OFFSET == 0
        && SLOTS == 1 << 16
        && COUNTDOWN_OFFSET == 0
        && std::mem::offset_of!(Counters, base) == 8
);

/// Blocks at and above this one were never claimed: a fork child's reset stops there, so
/// that it reads (and faults in) no page nobody used.
pub(crate) static BLOCKS_USED: AtomicUsize = AtomicUsize::new(0);
/// Some bit of SLOT_BITS was ever set (else a fork child need not look at them).
pub(crate) static PAGES_MARKED: AtomicBool = AtomicBool::new(false);
/// Blocks beyond the static ones (more than 1024 threads alive at once); never freed.
/// Held by fork's prepare handler.
pub static MORE_BLOCKS: Lock<Vec<&'static Counters>> = Lock::new(Vec::new());

/// Slots whose bit stays set whatever the table says (see `mark_for_good`).
pub(crate) static SLOTS_FOR_GOOD: [AtomicU64; SLOT_WORDS] = slots_marked_for_null();

pub(crate) const fn slots_marked_for_null() -> [AtomicU64; SLOT_WORDS] {
    let mut words = [const { AtomicU64::new(0) }; SLOT_WORDS];
    words[0] = AtomicU64::new(1);
    words
}
/// The slot of a block's address, as (word index, bit mask): its 256-byte granule, modulo
/// 64 Ki granules (16 MiB). Neighbouring blocks share a word, so a heap freed in random
/// order touches 1/2048 of its size in bitmap (a hash of the address measured 8 % slower
/// on a 2 MB heap: every free missed the cache).
#[inline(always)]
pub(crate) fn slot_bit(p: usize) -> (usize, u64) {
    let slot = (p >> 8) & (SLOTS - 1);
    (slot / 64, 1u64 << (slot % 64))
}

#[inline(always)]
pub(crate) fn slot_marked(p: usize) -> bool {
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
pub(crate) fn block_at(b: isize) -> &'static Counters {
    // SAFETY: `ThreadState::block` only ever holds the offset from HOT of a static block
    // (in HOT or BLOCKS) or a leaked one (MORE_BLOCKS).
    unsafe { &*((&HOT as *const Hot as *const u8).wrapping_offset(b) as *const Counters) }
}

/// The offset from HOT that designates `c` in `ThreadState::block`.
pub(crate) fn offset_of_block(c: &'static Counters) -> isize {
    (c as *const Counters as isize).wrapping_sub(&HOT as *const Hot as isize)
}

/// Whether the CPU has cmpxchg16b (read once, at load).
pub fn detect_cx16() {
    HAS_CX16.store(
        std::arch::is_x86_feature_detected!("cmpxchg16b"),
        Ordering::Relaxed,
    );
}
