//! The table of sampled allocations: buckets by (stack, size), and the live sampled blocks.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::signal_safe::heap_counters::*;

/// In a fork child: the blocks live in the process when it forked (the parent's Mallocs −
/// Frees, its own inherited count included), which the child's heap still holds.
pub(crate) static OBJECTS_AT_FORK: AtomicU64 = AtomicU64::new(0);

/// Sampled allocations folded by (stack, size), and the sampled blocks still live.
#[derive(Default)]
pub struct HeapTable {
    /// One copy of each distinct stack, shared by its buckets.
    pub(crate) stacks: std::collections::HashSet<std::sync::Arc<[u64]>, FastHash>,
    /// The buckets by the hash of (stack, size): the first of a chain linked by `chain`.
    pub(crate) index: HashMap<u64, u32, FastHash>,
    /// For each bucket, the next with the same hash (NO_BUCKET: none).
    pub(crate) chain: Vec<u32>,
    pub buckets: Vec<Bucket>,
    pub(crate) live: HashMap<usize, u32, FastHash>,
    /// Live sampled blocks per slot (the bit in SLOT_BITS is set while non-zero), made at
    /// the first sample: one cache line a sample and a free touch, where a map took two or
    /// three. A count that reaches u16::MAX stays there: the slot's bit stays set.
    pub(crate) slot_counts: Vec<u16>,
    /// Frees that passed the slot test and were looked up under the lock, and how many of
    /// those were sampled blocks: the measure of the cheap test's worth. Here rather than
    /// in atomics of their own: the lines the lookup touches anyway.
    pub(crate) frees_looked_up: u64,
    pub(crate) frees_of_samples: u64,
    /// Buckets holding an address in code that a dlclose may unmap, not yet pinned.
    pub(crate) unpinned: Vec<u32>,
    /// Estimated in-use bytes now: the sum of the weights of the live sampled blocks.
    pub(crate) live_bytes: u64,
    /// The highest `live_bytes` so far, and when it was reached (CLOCK_MONOTONIC ns).
    pub(crate) max_bytes: u64,
    pub(crate) max_mono_ns: u64,
    /// The heap as it stood at a past maximum (see `note_fall`).
    pub(crate) peak: Option<Peak>,
}

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
pub(crate) const NO_BUCKET: u32 = u32::MAX;

pub(crate) fn key_hash(stack: &[u64], size: u64) -> u64 {
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

pub(crate) fn record(p: usize, size: u64, stack: &[u64]) {
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

/// Records the sampled block at `p` (of bucket `b`) as live.
pub(crate) fn track_live(table: &mut HeapTable, p: usize, b: u32) {
    if table.live.insert(p, b).is_none() {
        table.live_bytes += table.buckets.get(b as usize).map_or(0, |b| b.weight);
        let (w, bit) = slot_bit(p);
        if table.slot_counts.is_empty() {
            table.slot_counts = vec![0; SLOTS];
        }
        let n = &mut table.slot_counts[w * 64 + bit.trailing_zeros() as usize];
        *n = n.saturating_add(1);
        SLOT_BITS[w].fetch_or(bit, Ordering::Relaxed);
        PAGES_MARKED.store(true, Ordering::Relaxed);
    }
}

/// Takes a freed block out of the live table if it is a sample; returns its bucket.
#[cold]
#[inline(never)]
pub(crate) fn free_slow(p: usize) -> Option<u32> {
    let _g = Guard::enter()?;
    let mut guard = TABLE.lock();
    let table = guard.as_mut()?;
    table.frees_looked_up += 1;
    let b = table.live.remove(&p)?;
    table.frees_of_samples += 1;
    note_fall(table);
    if let Some(bucket) = table.buckets.get_mut(b as usize) {
        bucket.frees += 1;
        table.live_bytes = table.live_bytes.saturating_sub(bucket.weight);
    }
    let (w, bit) = slot_bit(p);
    if let Some(n) = table
        .slot_counts
        .get_mut(w * 64 + bit.trailing_zeros() as usize)
    {
        if *n != u16::MAX {
            *n -= 1;
            if *n == 0 && SLOTS_FOR_GOOD[w].load(Ordering::Relaxed) & bit == 0 {
                SLOT_BITS[w].fetch_and(!bit, Ordering::Relaxed);
            }
        }
    }
    Some(b)
}

/// How many buckets the heap profile has.
pub fn bucket_count() -> usize {
    TABLE.lock().as_ref().map_or(0, |t| t.buckets.len())
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
pub(crate) fn scale(size: u64, rate: u64) -> f64 {
    if rate <= 1 || size == 0 {
        1.0
    } else {
        1.0 / (1.0 - libm::exp(-(size as f64) / rate as f64))
    }
}
