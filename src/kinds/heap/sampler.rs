//! The hooks' way into heap profiling: counting, the sampling countdown, the sampled path.
#![allow(unsafe_code)]

use std::sync::atomic::Ordering;

use super::*;
use crate::signal_safe::heap_counters::*;

/// The calling thread's counter block, claimed on first use (DISCARD while held).
#[inline(always)]
pub(crate) fn counters(t: &ThreadState) -> &'static Counters {
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
pub(crate) fn claim_counters(t: &ThreadState) -> &'static Counters {
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
pub(crate) fn count_in(c: &Counters, size: usize) -> bool {
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
    pub(crate) counted: bool,
    pub(crate) sample: Option<u32>,
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
pub(crate) fn next_gap(t: &ThreadState) -> i64 {
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
pub(crate) fn ln(x: f64) -> f64 {
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
pub(crate) fn sample_slow(t: &ThreadState, p: usize, size: u64, entry: Option<(u64, u64)>) {
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

/// The calling thread is exiting: its block may pass to a new thread once it is gone.
pub fn release_thread() {
    thread_state::with(|t| {
        let b = t.block.get();
        if b != UNCLAIMED_OFFSET && b != DISCARD_OFFSET {
            block_at(b).retiring.store(true, Ordering::Release);
        }
    });
}
