//! A fixed-size, multi-producer, single-consumer store of stack samples written from
//! signal handlers and drained by the collector thread.
//!
//! Layout: `SLOTS` slots, each a state word and a fixed record (thread id, weight, thread
//! name, depth, truncation flag, up to `MAX_DEPTH` addresses). Memory comes from one
//! anonymous mmap made at load, so no allocation happens in signal context.
//!
//! Protocol per slot: EMPTY → (producer CAS) WRITING → (producer store) FULL →
//! (consumer CAS) READING → (consumer store) EMPTY. Producers take the first EMPTY slot;
//! a sample that finds none is added to `lost` (by its weight) and later shows up under a
//! synthetic `rprof::lost_samples` frame.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::unwind::MAX_DEPTH;

const SLOTS: usize = 1024;

const EMPTY: u32 = 0;
const WRITING: u32 = 1;
const FULL: u32 = 2;
const READING: u32 = 3;

/// One recorded stack.
#[derive(Clone, Copy)]
pub struct Record {
    pub weight: u32,
    pub truncated: bool,
    pub depth: u16,
    pub thread_name: [u8; 16],
    pub pcs: [u64; MAX_DEPTH],
}

impl Record {
    pub fn stack(&self) -> &[u64] {
        self.pcs.get(..usize::from(self.depth)).unwrap_or(&[])
    }
}

struct Slot {
    state: AtomicU32,
    record: UnsafeCell<Record>,
}

pub struct Ring {
    slots: AtomicPtr<Slot>,
    /// Weight of samples that found no free slot (or arrived before the ring existed).
    lost: AtomicU64,
}

// SAFETY: each slot's record is accessed only by the thread that moved its state to WRITING
// or READING, so sharing the ring between threads is sound.
unsafe impl Sync for Ring {}

impl Ring {
    pub const fn new() -> Self {
        Ring {
            slots: AtomicPtr::new(std::ptr::null_mut()),
            lost: AtomicU64::new(0),
        }
    }

    /// Maps the slot memory. Not signal-safe; call once at load. Returns false if mmap fails.
    pub fn init(&self) -> bool {
        if !self.slots.load(Ordering::Acquire).is_null() {
            return true;
        }
        let size = SLOTS * std::mem::size_of::<Slot>();
        // SAFETY: an anonymous private mapping; zeroed memory is a valid EMPTY slot array.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return false;
        }
        self.slots.store(p as *mut Slot, Ordering::Release);
        true
    }

    fn slot(&self, i: usize) -> Option<&Slot> {
        let base = self.slots.load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        // SAFETY: base points to SLOTS slots mapped for the life of the process; i < SLOTS.
        Some(unsafe { &*base.add(i % SLOTS) })
    }

    /// Async-signal-safe. Stores a record built by `fill` in the first free slot, or counts
    /// it as lost. Taking the first free slot keeps the memory touched (and so the RSS) to
    /// the slots in use at once, not the whole ring.
    pub fn push(&self, weight: u32, fill: impl FnOnce(&mut Record)) {
        for i in 0..SLOTS {
            let Some(slot) = self.slot(i) else { break };
            if slot.state.load(Ordering::Relaxed) == EMPTY
                && slot
                    .state
                    .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // SAFETY: the WRITING state gives this thread exclusive access to the record.
                let rec = unsafe { &mut *slot.record.get() };
                rec.weight = weight;
                fill(rec);
                slot.state.store(FULL, Ordering::Release);
                return;
            }
        }
        self.lost.fetch_add(u64::from(weight), Ordering::Relaxed);
    }

    /// Hands every complete record to `f` and frees its slot. Single consumer only.
    pub fn drain(&self, mut f: impl FnMut(&Record)) {
        for i in 0..SLOTS {
            let Some(slot) = self.slot(i) else { return };
            if slot.state.load(Ordering::Relaxed) == FULL
                && slot
                    .state
                    .compare_exchange(FULL, READING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // SAFETY: the READING state gives this thread exclusive access to the record.
                f(unsafe { &*slot.record.get() });
                slot.state.store(EMPTY, Ordering::Release);
            }
        }
    }

    /// Takes the count of lost samples, resetting it.
    pub fn take_lost(&self) -> u64 {
        self.lost.swap(0, Ordering::Relaxed)
    }

    /// In a fork child: slots a vanished thread was writing are freed, everything is dropped.
    pub fn reset_after_fork(&self) {
        for i in 0..SLOTS {
            if let Some(slot) = self.slot(i) {
                slot.state.store(EMPTY, Ordering::Relaxed);
            }
        }
        self.lost.store(0, Ordering::Relaxed);
    }
}

impl Default for Ring {
    fn default() -> Self {
        Self::new()
    }
}
