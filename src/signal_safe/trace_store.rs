//! A lock-free, bounded store of stack traces with a count each, filled from signal
//! handlers and read at any moment without draining (async-profiler's call-trace storage
//! is the model: open addressing over hashes, trace bodies from an mmap-backed arena).
//!
//! Layout, all in one anonymous mapping made once (`init`), touched only as it fills and
//! not inherited by fork children (which map their own):
//! - `slots`: `SLOTS` open-addressing slots, each a trace hash (0: free) and the index + 1
//!   of its entry (0: being published).
//! - `entries`: up to `MAX_ENTRIES` entries in order of creation, each the arena offset of
//!   its trace (0: being published) and its cumulative count.
//! - the arena: trace bodies, bump-allocated. A body is one header word (depth in the low
//!   16 bits, bit 16 the truncation flag), two words of thread name, then `depth` addresses.
//!
//! Writers (`record`, async-signal-safe) reserve room for a body of the greatest depth,
//! walk the stack straight into it, hash it, and either add their weight to an entry with
//! the same trace or publish a new entry; room reserved in vain is given back when no
//! other writer reserved after it. A slot whose entry is still being published does not
//! match, so a racing writer may publish a second entry of the same trace: readers merge
//! them. What does not fit (table or arena full) is added to `lost`.
//!
//! Readers (`for_each`, `lost`) see every published entry with its count so far: counts
//! only grow, so the difference of two reads is the window between them. A fork child
//! starts empty.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::unwind::MAX_DEPTH;

const SLOTS: usize = 1 << 16;
/// At most half the slots are used, so that probe sequences stay short.
pub const MAX_ENTRIES: usize = SLOTS / 2;
/// A trace not found within this many slots of its hash's counts as not fitting (with at
/// most half the slots used, probe sequences are a few slots long).
const MAX_PROBES: usize = 4096;
const ARENA_BYTES: usize = 32 << 20;
const HEADER_WORDS: usize = 3;
const BODY_WORDS: usize = HEADER_WORDS + MAX_DEPTH;
const TRUNCATED: u64 = 1 << 16;
/// The header's upper half holds the thread id.
const TID_SHIFT: u32 = 32;

struct Slot {
    hash: AtomicU64,
    entry: AtomicU32,
}

struct Entry {
    /// Word offset of the body in the arena; 0 until published (offset 0 is never used).
    body: AtomicU32,
    count: AtomicU64,
}

/// One trace as read back.
pub struct Trace<'a> {
    pub pcs: &'a [u64],
    pub truncated: bool,
    pub thread_name: [u8; 16],
    /// The kernel thread id of the thread sampled (0: not known).
    pub tid: i32,
}

pub struct TraceStore {
    slots: AtomicPtr<Slot>,
    entries: AtomicPtr<Entry>,
    arena: AtomicPtr<AtomicU64>,
    /// Next free arena word (word 0 is never handed out).
    next_word: AtomicUsize,
    next_entry: AtomicUsize,
    /// The first entry of this process: a fork child ignores the entries it inherited.
    base: AtomicUsize,
    lost: AtomicU64,
}

// SAFETY: every shared word is atomic; a body is written only by the writer that reserved
// it, before it is published with a release store, and never changed after except by
// `rewrite` (atomic stores of whole words).
unsafe impl Sync for TraceStore {}

const SLOTS_BYTES: usize = SLOTS * std::mem::size_of::<Slot>();
const ENTRIES_BYTES: usize = MAX_ENTRIES * std::mem::size_of::<Entry>();
const TOTAL_BYTES: usize = SLOTS_BYTES + ENTRIES_BYTES + ARENA_BYTES;

/// Maps the store's zeroed, lazily backed memory, at `at` (replacing what is there) unless
/// null, and marks it not to be inherited by fork children. Null if the kernel refuses.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
fn map(at: *mut libc::c_void) -> *mut u8 {
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if !at.is_null() {
        flags |= libc::MAP_FIXED;
    }
    // SAFETY: an anonymous private mapping of our own; with MAP_FIXED, `at` is the start
    // of the store's own mapping of TOTAL_BYTES, which nothing else uses.
    let p = unsafe {
        libc::mmap(
            at,
            TOTAL_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    // SAFETY: advice on the mapping just made. Failure only means children inherit it.
    unsafe { libc::madvise(p, TOTAL_BYTES, libc::MADV_DONTFORK) };
    p.cast()
}

/// FNV-1a over words, never 0.
fn hash(words: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &w in words {
        h ^= w;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h | 1
}

impl TraceStore {
    pub const fn new() -> Self {
        TraceStore {
            slots: AtomicPtr::new(std::ptr::null_mut()),
            entries: AtomicPtr::new(std::ptr::null_mut()),
            arena: AtomicPtr::new(std::ptr::null_mut()),
            next_word: AtomicUsize::new(1),
            next_entry: AtomicUsize::new(0),
            base: AtomicUsize::new(0),
            lost: AtomicU64::new(0),
        }
    }

    /// Maps the store's memory (virtual only until used). Not signal-safe; once, at load.
    pub fn init(&self) -> bool {
        if !self.arena.load(Ordering::Acquire).is_null() {
            return true;
        }
        let base = map(std::ptr::null_mut());
        if base.is_null() {
            return false;
        }
        self.set_parts(base);
        true
    }

    fn set_parts(&self, base: *mut u8) {
        // SAFETY: the three parts lie within the TOTAL_BYTES just mapped, each aligned.
        let (entries, arena) =
            unsafe { (base.add(SLOTS_BYTES), base.add(SLOTS_BYTES + ENTRIES_BYTES)) };
        self.slots.store(base.cast(), Ordering::Release);
        self.entries.store(entries.cast(), Ordering::Release);
        self.arena.store(arena.cast(), Ordering::Release);
    }

    /// In a fork child (one thread, no writer running): forgets everything in constant
    /// time. The store's memory is not inherited (MADV_DONTFORK: a fork neither copies its
    /// page tables nor makes the parent's next samples copy pages); the child maps fresh
    /// memory at the same place. If it cannot, its samples count as lost.
    #[allow(unsafe_code)]
    #[link_section = ".text.hot.rprof_fork"]
    pub fn reset_after_fork(&self) {
        let base = self.slots.load(Ordering::Acquire);
        if !base.is_null() && map(base.cast()).is_null() {
            self.slots.store(std::ptr::null_mut(), Ordering::Release);
            self.entries.store(std::ptr::null_mut(), Ordering::Release);
            self.arena.store(std::ptr::null_mut(), Ordering::Release);
        }
        crate::signal_safe::lock::store_changed!(self.next_word, 1);
        crate::signal_safe::lock::store_changed!(self.next_entry, 0);
        crate::signal_safe::lock::store_changed!(self.base, 0);
        crate::signal_safe::lock::store_changed!(self.lost, 0);
    }

    fn word(&self, i: usize) -> Option<&AtomicU64> {
        let base = self.arena.load(Ordering::Acquire);
        if base.is_null() || i >= ARENA_BYTES / 8 {
            return None;
        }
        // SAFETY: base maps ARENA_BYTES for the life of the process; i is in range.
        Some(unsafe { &*base.add(i) })
    }

    fn slot(&self, i: usize) -> Option<&Slot> {
        let base = self.slots.load(Ordering::Acquire);
        // SAFETY: base maps SLOTS slots for the life of the process; i % SLOTS is in range.
        (!base.is_null()).then(|| unsafe { &*base.add(i % SLOTS) })
    }

    fn entry(&self, i: usize) -> Option<&Entry> {
        let base = self.entries.load(Ordering::Acquire);
        if base.is_null() || i >= MAX_ENTRIES {
            return None;
        }
        // SAFETY: base maps MAX_ENTRIES entries for the life of the process; i is in range.
        Some(unsafe { &*base.add(i) })
    }

    /// Async-signal-safe. Reserves `words` arena words; their offset, or None when full.
    fn reserve(&self, words: usize) -> Option<usize> {
        let mut at = self.next_word.load(Ordering::Relaxed);
        loop {
            if at + words > ARENA_BYTES / 8 {
                return None;
            }
            match self.next_word.compare_exchange_weak(
                at,
                at + words,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(at),
                Err(now) => at = now,
            }
        }
    }

    /// Gives back the end of a reservation `[at + keep, at + words)` if no one reserved
    /// after it.
    fn give_back(&self, at: usize, words: usize, keep: usize) {
        let _ = self.next_word.compare_exchange(
            at + words,
            at + keep,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// The body at word offset `at` as a slice of `len` words.
    fn body(&self, at: usize, len: usize) -> Option<&[AtomicU64]> {
        self.word(at + len.checked_sub(1)?)?;
        let base = self.arena.load(Ordering::Acquire);
        // SAFETY: the words at..at+len are inside the arena (checked above).
        Some(unsafe { std::slice::from_raw_parts(base.add(at), len) })
    }

    /// Async-signal-safe. Records one trace with `weight`: `walk` fills the addresses (at
    /// most MAX_DEPTH) and returns (depth, truncated). No allocation, no lock.
    pub fn record(
        &self,
        weight: u64,
        thread_name: [u8; 16],
        tid: i32,
        walk: impl FnOnce(&mut [u64; MAX_DEPTH]) -> (usize, bool),
    ) {
        let Some(at) = self.reserve(BODY_WORDS) else {
            self.lost.fetch_add(weight, Ordering::Relaxed);
            return;
        };
        let base = self.arena.load(Ordering::Acquire);
        // SAFETY: this writer owns the reserved words at..at+BODY_WORDS, inside the arena
        // (reserve checked); AtomicU64 has the layout of u64, and no one reads these words
        // before the entry is published.
        let pcs = unsafe { &mut *(base.add(at + HEADER_WORDS) as *mut [u64; MAX_DEPTH]) };
        let (depth, truncated) = walk(pcs);
        let depth = depth.min(MAX_DEPTH);
        let name = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&thread_name[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(w)
        };
        let header = depth as u64
            | if truncated { TRUNCATED } else { 0 }
            | u64::from(tid as u32) << TID_SHIFT;
        let Some(body) = self.body(at, HEADER_WORDS + depth) else {
            return;
        };
        body[0].store(header, Ordering::Relaxed);
        body[1].store(name(0), Ordering::Relaxed);
        body[2].store(name(1), Ordering::Relaxed);
        let len = HEADER_WORDS + depth;
        // SAFETY: as above; the words are initialised now.
        let words = unsafe { std::slice::from_raw_parts(base.add(at) as *const u64, len) };
        let h = hash(words);
        match self.place(h, words, at) {
            Placed::Existing(e) => {
                e.count.fetch_add(weight, Ordering::Relaxed);
                self.give_back(at, BODY_WORDS, 0);
            }
            Placed::New(e) => {
                e.count.fetch_add(weight, Ordering::Relaxed);
                self.give_back(at, BODY_WORDS, len);
            }
            Placed::Full => {
                self.lost.fetch_add(weight, Ordering::Relaxed);
                self.give_back(at, BODY_WORDS, 0);
            }
        }
    }

    /// Finds the entry of the trace `words` (hash `h`), or publishes a new one whose body
    /// is at `at`.
    fn place(&self, h: u64, words: &[u64], at: usize) -> Placed<'_> {
        let start = (h as usize) % SLOTS;
        for probe in 0..MAX_PROBES {
            let Some(slot) = self.slot(start + probe) else {
                return Placed::Full;
            };
            let mut seen = slot.hash.load(Ordering::Acquire);
            if seen == 0 {
                if self.len() >= MAX_ENTRIES {
                    // Not in the table, and no room for it: leave the slot free.
                    return Placed::Full;
                }
                match slot
                    .hash
                    .compare_exchange(0, h, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return self.publish(slot, at),
                    Err(now) => seen = now,
                }
            }
            if seen != h {
                continue;
            }
            let e = slot.entry.load(Ordering::Acquire);
            if e == 0 || e == u32::MAX || (e as usize - 1) < self.base.load(Ordering::Relaxed) {
                continue; // being published, the table was full, or inherited: no match
            }
            let Some(entry) = self.entry(e as usize - 1) else {
                continue;
            };
            if self.same(entry, words) {
                return Placed::Existing(entry);
            }
        }
        Placed::Full
    }

    fn publish(&self, slot: &Slot, at: usize) -> Placed<'_> {
        let i = self.next_entry.fetch_add(1, Ordering::AcqRel);
        let Some(entry) = self.entry(i) else {
            self.next_entry.fetch_sub(1, Ordering::AcqRel);
            slot.entry.store(u32::MAX, Ordering::Release);
            return Placed::Full;
        };
        entry.body.store(at as u32, Ordering::Release);
        slot.entry.store(i as u32 + 1, Ordering::Release);
        Placed::New(entry)
    }

    /// Whether the published body of `entry` is `words`.
    fn same(&self, entry: &Entry, words: &[u64]) -> bool {
        let at = entry.body.load(Ordering::Acquire) as usize;
        let Some(first) = self.word(at) else {
            return false;
        };
        let len = HEADER_WORDS + (first.load(Ordering::Relaxed) & 0xffff) as usize;
        if len != words.len() {
            return false;
        }
        self.body(at, len).is_some_and(|b| {
            b.iter()
                .zip(words)
                .all(|(a, &w)| a.load(Ordering::Relaxed) == w)
        })
    }

    /// Weight of samples that did not fit, since load or fork.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Published entries so far (indices 0..this; those below `first` are inherited).
    pub fn len(&self) -> usize {
        self.next_entry.load(Ordering::Acquire).min(MAX_ENTRIES)
    }

    /// The first entry of this process.
    pub fn first(&self) -> usize {
        self.base.load(Ordering::Relaxed)
    }

    /// Calls `f(index, trace, count)` for every published entry from `from` on, in order of
    /// creation. Not for signal context (it runs while writers go on, which is fine).
    pub fn for_each(&self, from: usize, mut f: impl FnMut(usize, Trace<'_>, u64)) {
        let base = self.arena.load(Ordering::Acquire);
        for i in from.max(self.first())..self.len() {
            let Some(entry) = self.entry(i) else { return };
            let at = entry.body.load(Ordering::Acquire) as usize;
            if at == 0 {
                continue;
            }
            let Some(first) = self.word(at) else { continue };
            let header = first.load(Ordering::Relaxed);
            let depth = (header & 0xffff) as usize;
            if self.body(at, HEADER_WORDS + depth).is_none() {
                continue;
            }
            let mut thread_name = [0u8; 16];
            for (k, chunk) in thread_name.chunks_mut(8).enumerate() {
                if let Some(w) = self.word(at + 1 + k) {
                    chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
                }
            }
            // SAFETY: the body is published (release store of `body`, acquired above) and
            // inside the arena (checked); its words change only by whole-word atomic
            // stores in `rewrite`, which a u64 read sees whole on x86-64.
            let pcs = unsafe {
                std::slice::from_raw_parts(base.add(at + HEADER_WORDS) as *const u64, depth)
            };
            let trace = Trace {
                pcs,
                truncated: header & TRUNCATED != 0,
                thread_name,
                tid: (header >> TID_SHIFT) as u32 as i32,
            };
            f(i, trace, entry.count.load(Ordering::Relaxed));
        }
    }

    /// Replaces addresses of the published entries from `from` on, where `map` gives a
    /// replacement (pinning addresses of code about to be unloaded). Such entries no longer
    /// match new samples of the raw addresses, which get entries of their own.
    pub fn rewrite(&self, from: usize, map: impl Fn(u64) -> Option<u64>) {
        for i in from.max(self.first())..self.len() {
            let Some(entry) = self.entry(i) else { return };
            let at = entry.body.load(Ordering::Acquire) as usize;
            let Some(first) = (at != 0).then(|| self.word(at)).flatten() else {
                continue;
            };
            let depth = (first.load(Ordering::Relaxed) & 0xffff) as usize;
            for k in 0..depth {
                if let Some(w) = self.word(at + HEADER_WORDS + k) {
                    if let Some(new) = map(w.load(Ordering::Relaxed)) {
                        w.store(new, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

impl Default for TraceStore {
    fn default() -> Self {
        Self::new()
    }
}

enum Placed<'a> {
    Existing(&'a Entry),
    New(&'a Entry),
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[..s.len()].copy_from_slice(s.as_bytes());
        n
    }

    fn record(store: &TraceStore, weight: u64, thread: &str, pcs: &[u64]) {
        store.record(weight, name(thread), 0, |buf| {
            buf[..pcs.len()].copy_from_slice(pcs);
            (pcs.len(), false)
        });
    }

    fn counts(store: &TraceStore) -> Vec<(Vec<u64>, String, u64)> {
        let mut v = Vec::new();
        store.for_each(0, |_, t, n| {
            let len = t.thread_name.iter().position(|&b| b == 0).unwrap_or(16);
            v.push((
                t.pcs.to_vec(),
                String::from_utf8_lossy(&t.thread_name[..len]).into_owned(),
                n,
            ));
        });
        v
    }

    #[test]
    fn same_trace_is_counted_in_one_entry_and_reserved_room_comes_back() {
        let store = TraceStore::new();
        assert!(store.init());
        record(&store, 1, "main", &[1, 2, 3]);
        let used = store.next_word.load(Ordering::Relaxed);
        record(&store, 4, "main", &[1, 2, 3]);
        record(&store, 2, "worker", &[1, 2, 3]);
        record(&store, 1, "main", &[1, 2]);
        assert_eq!(
            counts(&store),
            vec![
                (vec![1, 2, 3], "main".into(), 5),
                (vec![1, 2, 3], "worker".into(), 2),
                (vec![1, 2], "main".into(), 1),
            ]
        );
        // The repeat took no room; each new trace took only its own length.
        assert_eq!(used, 1 + HEADER_WORDS + 3);
        assert_eq!(
            store.next_word.load(Ordering::Relaxed),
            used + 2 * HEADER_WORDS + 3 + 2
        );
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let store = TraceStore::new();
        assert!(store.init());
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let store = &store;
                s.spawn(move || {
                    for i in 0..20_000u64 {
                        record(store, 1, "w", &[i % 100, t % 2, 7]);
                    }
                });
            }
        });
        let mut total = 0;
        let mut by_trace = std::collections::HashMap::new();
        for (pcs, _, n) in counts(&store) {
            total += n;
            *by_trace.entry(pcs).or_insert(0) += n;
        }
        assert_eq!(total, 80_000);
        assert_eq!(store.lost(), 0);
        // 100 × 2 distinct traces, each 400 times (duplicates entries merged by readers).
        assert_eq!(by_trace.len(), 200);
        assert!(by_trace.values().all(|&n| n == 400));
    }

    #[test]
    fn a_full_table_counts_lost_weight() {
        let store = TraceStore::new();
        assert!(store.init());
        for i in 0..(MAX_ENTRIES as u64 + 100) {
            record(&store, 3, "x", &[i + 1]);
        }
        assert_eq!(store.len(), MAX_ENTRIES);
        assert_eq!(store.lost(), 300);
        // Known traces still count.
        record(&store, 1, "x", &[1]);
        assert_eq!(store.lost(), 300);
    }

    #[test]
    fn reset_forgets_and_rewrite_replaces() {
        let store = TraceStore::new();
        assert!(store.init());
        record(&store, 1, "a", &[10, 20]);
        store.rewrite(0, |pc| (pc == 10).then_some(99));
        assert_eq!(counts(&store), vec![(vec![99, 20], "a".into(), 1)]);
        // The raw trace is a new entry now.
        record(&store, 1, "a", &[10, 20]);
        assert_eq!(store.len(), 2);
        store.reset_after_fork();
        assert!(counts(&store).is_empty());
        assert_eq!((store.first(), store.len(), store.lost()), (0, 0, 0));
        record(&store, 2, "a", &[10, 20]);
        assert_eq!(counts(&store), vec![(vec![10, 20], "a".into(), 2)]);
        assert_eq!((store.first(), store.len()), (0, 1));
    }
}
