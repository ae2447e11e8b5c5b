//! The heap as it stood at its highest in-use estimate (heaptrack's peak).
#![allow(unsafe_code)]

use super::*;

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
pub(crate) const PEAK_MARGIN_SHIFT: u32 = 4;

/// After the in-use estimate rose: notes a new running maximum and when it was reached.
pub(crate) fn note_rise(table: &mut HeapTable) {
    if table.live_bytes > table.max_bytes {
        table.max_bytes = table.live_bytes;
        table.max_mono_ns = crate::signal_safe::sys::monotonic_ns();
    }
}

/// Before the in-use estimate falls: if it stands at its running maximum and that passes
/// the peak kept by the margin, the buckets' counts of this moment are the new peak.
pub(crate) fn note_fall(table: &mut HeapTable) {
    let kept = table.peak.as_ref().map_or(0, |p| p.bytes);
    if table.live_bytes == table.max_bytes && table.live_bytes > kept + (kept >> PEAK_MARGIN_SHIFT)
    {
        let mut peak = table.peak.take().unwrap_or_default();
        fill_peak(table, &mut peak);
        table.peak = Some(peak);
    }
}

/// The Unix time of a CLOCK_MONOTONIC reading of this boot, in nanoseconds.
pub(crate) fn unix_ns_of(mono_ns: u64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let ago = crate::signal_safe::sys::monotonic_ns().saturating_sub(mono_ns);
    now - ago as i64
}

/// `peak` := the buckets' counts now, at the running maximum.
pub(crate) fn fill_peak(table: &HeapTable, peak: &mut Peak) {
    peak.bytes = table.live_bytes;
    peak.unix_ns = unix_ns_of(table.max_mono_ns);
    peak.mono_ns = table.max_mono_ns;
    peak.counts.clear();
    peak.counts
        .extend(table.buckets.iter().map(|b| (b.allocs, b.frees)));
}

/// The heap at its peak so far: the buckets with their counts of that moment, and the
/// moment (None before any sample).
#[cfg(test)]
pub fn peak() -> Option<(Vec<Bucket>, Peak)> {
    peak_of(TABLE.lock().as_ref()?)
}

/// `peak` of a table the caller holds.
pub fn peak_of(table: &HeapTable) -> Option<(Vec<Bucket>, Peak)> {
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
