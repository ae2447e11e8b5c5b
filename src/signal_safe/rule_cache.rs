//! A cache of simple unwind rules by address, for the unwinder.
//!
//! Parsing a CIE and an FDE and running their programs costs about a thousand instructions
//! a frame; stacks repeat the same addresses. A direct-mapped table keeps, per address, the
//! rule of the common shape (CFA = RSP or RBP + offset, return address and RBP saved at
//! offsets from the CFA). Entries are read and written seqlock-style with atomics only, so
//! signal handlers can use it: a reader that sees a write in progress just misses, and a
//! writer that finds the entry busy does not cache. dlclose clears it (see UnloadFence).
//! Other callee-saved registers keep their values through a cached step; only a later
//! frame whose CFA is computed from such a register could be affected.

use std::sync::atomic::{AtomicU64, Ordering};

use super::cfi::{CfaRule, RowState, Rule};
use super::frame::{Regs, StackBounds, RA, RSP};

pub(super) const RULE_SLOTS: usize = 4096;

pub(super) struct RuleEntry {
    seq: AtomicU64,
    key: AtomicU64,
    rule: AtomicU64,
}

pub(super) static RULES: [RuleEntry; RULE_SLOTS] = [const {
    RuleEntry {
        seq: AtomicU64::new(0),
        key: AtomicU64::new(0),
        rule: AtomicU64::new(0),
    }
}; RULE_SLOTS];

pub(super) fn rule_slot(key: u64) -> &'static RuleEntry {
    &RULES[(key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize % RULE_SLOTS]
}

/// Async-signal-safe.
pub(super) fn rule_cache_get(key: u64) -> Option<u64> {
    let e = rule_slot(key);
    let s1 = e.seq.load(Ordering::Acquire);
    if s1 == 0 || s1 & 1 == 1 {
        return None;
    }
    let (k, r) = (
        e.key.load(Ordering::Relaxed),
        e.rule.load(Ordering::Relaxed),
    );
    std::sync::atomic::fence(Ordering::Acquire);
    (e.seq.load(Ordering::Relaxed) == s1 && k == key).then_some(r)
}

/// Async-signal-safe.
pub(super) fn rule_cache_put(key: u64, rule: u64) {
    let e = rule_slot(key);
    let s = e.seq.load(Ordering::Relaxed);
    if s & 1 == 1
        || e.seq
            .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    e.key.store(key, Ordering::Relaxed);
    e.rule.store(rule, Ordering::Relaxed);
    e.seq.store(s + 2, Ordering::Release);
}

pub(super) fn rule_cache_clear() {
    for e in &RULES {
        e.seq.store(0, Ordering::Release);
    }
}

/// The cached rule of an outermost frame (its return address undefined: glibc's `clone`
/// and `_start`), which every walk reaches: the walk ends there. Bit 63 is never set in a
/// packed rule.
pub(super) const END_OF_STACK: u64 = u64::MAX;

/// Packs a row of the common shape: bit 0 CFA from RBP (else RSP), bit 1 RBP saved,
/// bits 2..26 CFA offset (signed 24), 26..42 RA offset, 42..58 RBP offset (signed 16).
pub(super) fn pack_rule(row: &RowState) -> Option<u64> {
    let CfaRule::RegOffset(reg, cfa_off) = row.cfa else {
        return None;
    };
    let from_rbp = match reg as usize {
        RSP => 0u64,
        6 => 1,
        _ => return None,
    };
    let Rule::Offset(ra_off) = row.regs[RA] else {
        return None;
    };
    let (rbp_saved, rbp_off) = match row.regs[6] {
        Rule::Same => (0u64, 0i64),
        Rule::Offset(o) => (1, o),
        _ => return None,
    };
    let fits = |v: i64, bits: u32| v >= -(1 << (bits - 1)) && v < (1 << (bits - 1));
    if !fits(cfa_off, 24) || !fits(ra_off, 16) || !fits(rbp_off, 16) {
        return None;
    }
    let field = |v: i64, bits: u32| (v as u64) & ((1u64 << bits) - 1);
    Some(
        from_rbp
            | rbp_saved << 1
            | field(cfa_off, 24) << 2
            | field(ra_off, 16) << 26
            | field(rbp_off, 16) << 42,
    )
}

pub(super) fn unpack_field(rule: u64, shift: u32, bits: u32) -> i64 {
    let v = (rule >> shift) & ((1u64 << bits) - 1);
    ((v << (64 - bits)) as i64) >> (64 - bits)
}

/// Applies a cached rule: the caller's registers, or None if a read fails.
pub(super) fn step_cached(
    regs: &Regs,
    rule: u64,
    stack: &StackBounds,
    caller: &mut Regs,
) -> Option<()> {
    let (ra, cfa, bp) = step_cached_parts(rule, regs.0[RSP]?, regs.0[6], stack)?;
    *caller = *regs;
    caller.0[RA] = Some(ra);
    caller.0[6] = bp;
    caller.0[RSP] = Some(cfa);
    Some(())
}

/// A cached rule applied to the three registers it involves: from the callee's stack and
/// frame pointers (the latter unknown: None), the caller's return address, stack pointer
/// (the CFA) and frame pointer (None if its saved copy cannot be read), or None if the
/// rule needs an unknown frame pointer, the return address cannot be read or the stack
/// does not rise. `step_cached` on whole register sets; `walk_cached_from_call` on these
/// three alone.
#[inline(always)]
pub(super) fn step_cached_parts(
    rule: u64,
    sp: u64,
    bp: Option<u64>,
    stack: &StackBounds,
) -> Option<(u64, u64, Option<u64>)> {
    let base = if rule & 1 == 1 { bp? } else { sp };
    let cfa = base.wrapping_add(unpack_field(rule, 2, 24) as u64);
    let ra = stack.read_u64(cfa.wrapping_add(unpack_field(rule, 26, 16) as u64))?;
    let bp = if rule & 2 == 2 {
        stack.read_u64(cfa.wrapping_add(unpack_field(rule, 42, 16) as u64))
    } else {
        bp
    };
    (cfa > sp).then_some((ra, cfa, bp))
}
