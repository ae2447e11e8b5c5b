//! Block and mutex profiles of pthread synchronisation, in Go's model.
//!
//! - Uncontended paths cost almost nothing: each lock hook first tries the lock (the real
//!   trylock; for a mutex, a load of its lock word) after reading one global flag, with no
//!   thread-local; only when the lock is busy is the wait timed (as mutrace and
//!   async-profiler do). An unlock checks one slot (indexed by a hash
//!   of the lock's address) and does nothing more unless a timed waiter is registered there.
//! - Waiters are accounted per slot under a tiny per-slot spin lock, so threads contending
//!   for different locks never meet on a global lock; locks that share a slot (rare with
//!   4096 slots) share their accounting.
//! - Block profile (the waiter's view, Go's `SetBlockProfileRate`): a wait of d ns is kept
//!   if d ≥ rate, or with probability d/rate and then counted as rate/d waits of rate ns,
//!   so totals stay unbiased. Stack: the waiter's, starting at the pthread call.
//! - Mutex profile (the holder's view, Go's `SetMutexProfileFraction`): when a mutex or
//!   rwlock with timed waiters is unlocked, the unlocker is charged with the time those
//!   waiters have waited since the last charge on that lock (all waiters together, as Go
//!   1.22 does); about 1 in `fraction` such events is kept and scaled by `fraction`.
//!   Stack: the unlocker's, starting at the unlock call.
//! - Every sample carries a `lock` label with the object's address, so
//!   `pprof -tagfocus lock=0x…` isolates one lock.

use std::collections::HashMap;

use rprof_profile::{names, Builder, Profile};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::kinds::stack::{self, OwnFrames};
use crate::runtime::guard::{self, Guard};
use crate::signal_safe::lock::Lock;
use crate::signal_safe::sys;
use crate::symbols::encode::StackEncoder;
use crate::symbols::symbolize::{self, Symbolizer};

static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Block profile rate in ns (0: off).
static BLOCK_RATE: AtomicU64 = AtomicU64::new(0);
/// Mutex profile fraction (0: off).
static MUTEX_FRACTION: AtomicU64 = AtomicU64::new(0);
/// Random state shared by sampling decisions (races only perturb randomness).
static RNG: AtomicU64 = AtomicU64::new(0x853c_49e6_748f_ea9b);

const WAIT_SLOTS: usize = 4096;

/// Timed waiters currently blocked on the locks that hash to one slot.
struct WaitSlot {
    /// Number of waiters: the unlock fast path's only check.
    count: AtomicU32,
    busy: AtomicBool,
    /// Sum over waiters of the time from which each is not yet charged to an unlocker,
    /// and the time of the last charge (ns of the monotonic clock); guarded by `busy`.
    uncharged_since_sum: AtomicU64,
    last_charge: AtomicU64,
}

/// Timed waiters in the whole process: while zero (no contention anywhere), an unlock
/// checks this one word and nothing else.
static TIMED_WAITERS: AtomicU32 = AtomicU32::new(0);

static WAITING: [WaitSlot; WAIT_SLOTS] = [const {
    WaitSlot {
        count: AtomicU32::new(0),
        busy: AtomicBool::new(false),
        uncharged_since_sum: AtomicU64::new(0),
        last_charge: AtomicU64::new(0),
    }
}; WAIT_SLOTS];

impl WaitSlot {
    /// Runs `f` with the slot held (a few instructions; contenders spin briefly).
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        let r = f();
        self.busy.store(false, Ordering::Release);
        r
    }
}

/// Distinct (stack, object) buckets kept per profile; beyond that, one overflow bucket.
const MAX_BUCKETS: usize = 16_384;

/// Events folded by (stack, object address); counts may be fractional (unbiased scaling).
#[derive(Default)]
pub struct Events {
    index: HashMap<(Vec<u64>, usize), u32>,
    pub buckets: Vec<EventBucket>,
    /// The buckets below this were looked at by the last pinning: their stacks hold no
    /// address of unloadable code any more (a bucket's stack never changes but there), so
    /// the next pinning looks only at the buckets made since.
    pinned: usize,
}

#[derive(Clone)]
pub struct EventBucket {
    pub stack: Vec<u64>,
    pub object: usize,
    pub count: f64,
    pub delay_ns: f64,
}

impl Events {
    fn add(&mut self, stack: Vec<u64>, object: usize, count: f64, delay_ns: f64) {
        let full = self.buckets.len() >= MAX_BUCKETS;
        let key = if full {
            (Vec::new(), 0)
        } else {
            (stack, object)
        };
        let next = self.buckets.len() as u32;
        let i = *self.index.entry(key.clone()).or_insert(next);
        if i == next {
            self.buckets.push(EventBucket {
                stack: key.0,
                object: key.1,
                count: 0.0,
                delay_ns: 0.0,
            });
        }
        let b = &mut self.buckets[i as usize];
        b.count += count;
        b.delay_ns += delay_ns;
    }

    /// Addresses of unloadable code in the buckets made since the last pinning, up to
    /// `upto`.
    fn unpinned_addresses(&self, upto: usize) -> impl Iterator<Item = u64> + '_ {
        self.buckets[self.pinned..upto]
            .iter()
            .flat_map(|b| b.stack.iter().copied())
            .filter(|&pc| symbolize::needs_pinning(pc))
    }

    /// Gives the buckets made since the last pinning, up to `upto`, their pinned stacks,
    /// re-keyed. Two stacks may now be equal (two loads of one library): the later bucket
    /// takes the key, and counts stay per bucket.
    fn pin(&mut self, ids: &HashMap<u64, u64>, upto: usize) {
        for i in self.pinned..upto {
            let b = &mut self.buckets[i];
            if !b.stack.iter().any(|pc| ids.contains_key(pc)) {
                continue;
            }
            let mut key = (std::mem::take(&mut b.stack), b.object);
            if self.index.get(&key) == Some(&(i as u32)) {
                self.index.remove(&key);
            }
            symbolize::repin(std::iter::once(&mut key.0), ids);
            b.stack.clone_from(&key.0);
            self.index.insert(key, i as u32);
        }
        self.pinned = upto;
    }
}

#[derive(Default)]
pub struct ContentionTable {
    pub block: Events,
    pub mutex: Events,
}

/// Guards both event tables; only recorded (sampled) events take it.
pub static TABLE: Lock<Option<ContentionTable>> = Lock::new(None);

/// Starts recording the block profile with Go's semantics for `rate` (ns; 0: off).
pub fn init_block(rate: u64) {
    start(&BLOCK_RATE, rate);
}

/// Starts recording the mutex profile with Go's semantics for `fraction` (0: off).
pub fn init_mutex(fraction: u64) {
    start(&MUTEX_FRACTION, fraction);
}

fn start(setting: &AtomicU64, value: u64) {
    if value == 0 {
        return;
    }
    {
        let mut t = TABLE.lock();
        if t.is_none() {
            *t = Some(ContentionTable::default());
        }
    }
    setting.store(value, Ordering::Relaxed);
    RNG.store(sys::monotonic_ns() | 1, Ordering::Relaxed);
    ACTIVE.store(true, Ordering::Release);
}

pub fn mutex_fraction() -> u64 {
    MUTEX_FRACTION.load(Ordering::Relaxed)
}

#[inline]
fn slot(object: usize) -> &'static WaitSlot {
    let h = (object as u64 >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52;
    &WAITING[h as usize % WAIT_SLOTS]
}

fn random() -> u64 {
    // splitmix64 step on a shared counter: cheap, and good enough to pick samples.
    let mut z = RNG.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether waits are being recorded (and the caller should try first and time a wait).
/// One global load: the fast path reads no thread-local.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Runs `wait` (a blocking call on `object` after its trylock failed), timing it; `entry` is
/// the address of the hook the program called, the first frame of the recorded stack.
/// When `holder_charged`, the wait is registered so the unlocker of `object` is charged
/// with it (mutexes and rwlocks).
pub fn timed_wait<R>(
    entry: usize,
    object: usize,
    holder_charged: bool,
    wait: impl FnOnce() -> R,
) -> R {
    if !active() || guard::held() {
        return wait();
    }
    let start = sys::monotonic_ns();
    if holder_charged {
        register(object, start);
    }
    let r = wait();
    let end = sys::monotonic_ns();
    if holder_charged {
        deregister(object, start);
    }
    record_block(entry, object, end.saturating_sub(start));
    r
}

fn register(object: usize, start: u64) {
    // Counted first: while TIMED_WAITERS is 0, no slot is held or in use (see
    // `reset_after_fork`).
    TIMED_WAITERS.fetch_add(1, Ordering::Release);
    let s = slot(object);
    s.with(|| {
        let since = start.max(s.last_charge.load(Ordering::Relaxed));
        s.uncharged_since_sum.fetch_add(since, Ordering::Relaxed);
        s.count.fetch_add(1, Ordering::Release);
    });
}

fn deregister(object: usize, start: u64) {
    let s = slot(object);
    s.with(|| {
        let since = start.max(s.last_charge.load(Ordering::Relaxed));
        let sum = s.uncharged_since_sum.load(Ordering::Relaxed);
        s.uncharged_since_sum
            .store(sum.saturating_sub(since), Ordering::Relaxed);
        s.count.fetch_sub(1, Ordering::Release);
    });
    TIMED_WAITERS.fetch_sub(1, Ordering::Release);
}

/// The time the slot's waiters have waited since the last charge, and a new charge at `now`.
fn charge(s: &WaitSlot, now: u64) -> u64 {
    s.with(|| {
        let n = u64::from(s.count.load(Ordering::Relaxed));
        let owed = (n * now).saturating_sub(s.uncharged_since_sum.load(Ordering::Relaxed));
        s.uncharged_since_sum.store(n * now, Ordering::Relaxed);
        s.last_charge.store(now, Ordering::Relaxed);
        owed
    })
}

fn record_block(entry: usize, object: usize, delay: u64) {
    let rate = BLOCK_RATE.load(Ordering::Relaxed);
    if rate == 0 || delay == 0 || (delay < rate && random() % rate >= delay) {
        return;
    }
    let (count, recorded) = if delay < rate {
        (rate as f64 / delay as f64, rate as f64)
    } else {
        (1.0, delay as f64)
    };
    let Some(_g) = Guard::enter() else { return };
    let stack = stack::capture(OwnFrames::Entry(entry));
    if let Some(t) = TABLE.lock().as_mut() {
        t.block.add(stack, object, count, recorded);
    }
}

/// Whether any thread is in a timed wait on a mutex or rwlock (else an unlock has no one
/// to charge).
#[inline(always)]
pub fn any_timed_waiter() -> bool {
    TIMED_WAITERS.load(Ordering::Relaxed) != 0
}

/// Before the real unlock of a mutex or rwlock: charge the unlocker (whose stack starts at
/// `entry`, the hook the program called) with the time its timed waiters have waited since
/// the last charge.
#[inline]
pub fn before_unlock(entry: usize, object: usize) {
    if any_timed_waiter() {
        charge_if_waited(entry, object);
    }
}

#[cold]
#[inline(never)]
fn charge_if_waited(entry: usize, object: usize) {
    if active() && slot(object).count.load(Ordering::Relaxed) != 0 {
        charge_unlocker(entry, object);
    }
}

#[cold]
#[inline(never)]
fn charge_unlocker(entry: usize, object: usize) {
    let Some(_g) = Guard::enter() else { return };
    let delay = charge(slot(object), sys::monotonic_ns());
    let fraction = MUTEX_FRACTION.load(Ordering::Relaxed);
    if delay == 0 || fraction == 0 || !random().is_multiple_of(fraction) {
        return;
    }
    let stack = stack::capture(OwnFrames::Entry(entry));
    if let Some(t) = TABLE.lock().as_mut() {
        t.mutex.add(stack, object, 1.0, delay as f64);
    }
}

/// Which of the two tables a kind reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Block,
    Mutex,
}

fn events(t: &ContentionTable, which: Which) -> &Events {
    match which {
        Which::Block => &t.block,
        Which::Mutex => &t.mutex,
    }
}

/// A copy of one table's buckets, taken under its lock.
pub fn buckets_of(which: Which) -> Vec<EventBucket> {
    TABLE
        .lock()
        .as_ref()
        .map(|t| events(t, which).buckets.clone())
        .unwrap_or_default()
}

/// How many buckets one table has.
pub fn bucket_count(which: Which) -> usize {
    TABLE
        .lock()
        .as_ref()
        .map_or(0, |t| events(t, which).buckets.len())
}

/// Whether (block, mutex) recorded nothing (checked without copying the buckets).
pub fn are_empty() -> (bool, bool) {
    TABLE.lock().as_ref().map_or((true, true), |t| {
        (t.block.buckets.is_empty(), t.mutex.buckets.is_empty())
    })
}

/// Before a dlclose: resolve addresses of unloadable code in both tables while mapped.
/// Only the buckets made since the last time are looked at: the cost does not grow with
/// the waits recorded so far. The addresses are resolved without the table's lock, as
/// heap's are (`heap::pin_unloadable`): resolving waits for the loader's write lock, and a
/// thread inside dlclose holding it may record a wait (an allocator's mutex).
pub fn pin_unloadable(symbolizer: &mut Symbolizer) {
    for _round in 0..crate::kinds::heap::PIN_ROUNDS {
        let (upto, addrs) = {
            let mut guard = TABLE.lock();
            let Some(t) = guard.as_mut() else { return };
            let upto = (t.block.buckets.len(), t.mutex.buckets.len());
            if upto == (t.block.pinned, t.mutex.pinned) {
                return;
            }
            let addrs: Vec<u64> = t
                .block
                .unpinned_addresses(upto.0)
                .chain(t.mutex.unpinned_addresses(upto.1))
                .collect();
            (upto, addrs)
        };
        let ids = if addrs.is_empty() {
            HashMap::new()
        } else {
            symbolizer.pin(addrs)
        };
        let mut guard = TABLE.lock();
        let Some(t) = guard.as_mut() else { return };
        t.block.pin(&ids, upto.0);
        t.mutex.pin(&ids, upto.1);
    }
}

/// In a fork child only the forking thread exists: nobody waits on anything, and the
/// child's profiles start empty (the parent's tables are left behind, not freed).
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
pub fn reset_after_fork() {
    // SAFETY: called from fork's child handler only (lib.rs).
    let table = unsafe { TABLE.in_fork_child() };
    if table
        .as_ref()
        .is_some_and(|t| !t.block.buckets.is_empty() || !t.mutex.buckets.is_empty())
    {
        std::mem::forget(table.replace(ContentionTable::default()));
    }
    // With no timed waiter anywhere every slot is free and clean (waiters are counted
    // before they take a slot and after they leave it): the 128 KiB table, nearly all of
    // it never touched, is not even read. Otherwise only slots in use are written (a page
    // written in a fork child is copied).
    if TIMED_WAITERS.load(Ordering::Relaxed) == 0 {
        return;
    }
    TIMED_WAITERS.store(0, Ordering::Relaxed);
    for s in &WAITING {
        if s.busy.load(Ordering::Relaxed)
            || s.count.load(Ordering::Relaxed) != 0
            || s.uncharged_since_sum.load(Ordering::Relaxed) != 0
        {
            s.busy.store(false, Ordering::Relaxed);
            s.count.store(0, Ordering::Relaxed);
            s.uncharged_since_sum.store(0, Ordering::Relaxed);
        }
    }
}

/// A block or mutex profile in Go's shape (one writer for both, unlike Go's near-copies):
/// contentions/count and delay/nanoseconds, period type contentions/count, period 1;
/// `scale` multiplies every value (the mutex fraction; 1 for block, whose buckets are
/// already unbiased). Each sample has a `lock` label with the object's address.
pub fn contention_profile(
    buckets: &[EventBucket],
    scale: f64,
    symbolizer: &mut Symbolizer,
) -> Profile {
    let b = Builder::new(
        &[
            (names::CONTENTIONS, names::COUNT),
            (names::DELAY, names::NANOSECONDS),
        ],
        (names::CONTENTIONS, names::COUNT),
        1,
    );
    let mut enc =
        StackEncoder::for_stacks(b, buckets.iter().map(|b| b.stack.as_slice()), symbolizer);
    for bucket in buckets {
        let count = (bucket.count * scale).round() as i64;
        let delay = (bucket.delay_ns * scale).round() as i64;
        if count == 0 && delay == 0 {
            continue;
        }
        let ids = enc.stack(&bucket.stack, false);
        let lock = format!("{:#x}", bucket.object);
        enc.builder()
            .add_sample(ids, vec![count, delay], &[("lock", &lock)], &[]);
    }
    enc.finish()
}

/// Go's block (`--- contention:`) or mutex (`--- mutex:`) text. Delays are nanoseconds,
/// so cycles/second is 1e9.
pub fn contention_text(
    buckets: &[EventBucket],
    symbolizer: &mut Symbolizer,
    mutex: bool,
) -> String {
    use std::fmt::Write as _;
    let frames = symbolizer.resolve_all(buckets.iter().flat_map(|b| b.stack.iter().copied()));
    let mut out = String::from(if mutex {
        "--- mutex:\n"
    } else {
        "--- contention:\n"
    });
    out.push_str("cycles/second=1000000000\n");
    if mutex {
        let _ = writeln!(out, "sampling period={}", mutex_fraction());
    }
    for b in buckets {
        let _ = writeln!(
            out,
            "{} {} @{}",
            b.delay_ns.round() as i64,
            b.count.round() as i64,
            crate::symbols::encode::addresses(&b.stack, &frames)
        );
        crate::symbols::encode::frame_lines(&mut out, &b.stack, &frames);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlocker_is_charged_once_for_all_waiters() {
        let object = 0x1000;
        let s = slot(object);
        // Two waiters from t=100 and t=300; an unlock at t=1000 owes 900 + 700.
        register(object, 100);
        register(object, 300);
        assert_eq!(charge(s, 1000), 1600);
        // A waiter leaves after that charge; the other is owed only the time since.
        deregister(object, 100);
        assert_eq!(charge(s, 1500), 500);
        deregister(object, 300);
        assert_eq!(s.count.load(Ordering::Relaxed), 0);
        assert_eq!(s.uncharged_since_sum.load(Ordering::Relaxed), 0);
    }
}
