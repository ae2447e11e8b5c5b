//! The heap kind's profiles, from one snapshot: Go's heap profile, heaptrack's peak, Go's
//! debug=1 text and its MemStats block.

use rprof_profile::{names, Builder, Profile};

use super::{scaled, Bucket, Peak};
use crate::symbols::encode::StackEncoder;
use crate::symbols::symbolize::Symbolizer;

/// The heap as one reading: the buckets, the peak and the exact counts, all taken under
/// the table's lock (so that a file's buckets, totals and counts agree), and the figures of
/// the allocator and the process read just after.
pub struct HeapState {
    pub rate: u64,
    pub buckets: Vec<Bucket>,
    pub peak: Option<(Vec<Bucket>, Peak)>,
    /// (allocation calls, frees, bytes requested) since the start.
    pub totals: (u64, u64, u64),
    pub live_objects: u64,
    /// Go's MemStats fields, in its order.
    pub memstats: Vec<(&'static str, u64)>,
    /// glibc's mallinfo2 (arena, hblkhd, uordblks, fordblks, keepcost), when asked for.
    pub mallinfo: Option<[usize; 5]>,
    /// (RSS, peak RSS) in bytes.
    pub rss: Option<(u64, u64)>,
}

/// Leaf frames that are allocation functions themselves (C++'s operator new calls malloc):
/// a heap stack starts at their caller, as Go's start at the allocating function.
fn is_allocation_function(name: &str) -> bool {
    name.starts_with("operator new")
}

/// A heap profile's builder holding one sample per bucket with any allocation.
fn heap_samples(buckets: &[Bucket], rate: u64, symbolizer: &mut Symbolizer) -> StackEncoder {
    let b = Builder::new(
        &[
            (names::ALLOC_OBJECTS, names::COUNT),
            (names::ALLOC_SPACE, names::BYTES),
            (names::INUSE_OBJECTS, names::COUNT),
            (names::INUSE_SPACE, names::BYTES),
        ],
        (names::SPACE, names::BYTES),
        rate as i64,
    );
    let mut enc = StackEncoder::for_stacks(b, buckets.iter().map(|b| &b.stack[..]), symbolizer);
    for bucket in buckets {
        let values = scaled(bucket, rate);
        if values[0] == 0 {
            continue;
        }
        let skip = bucket
            .stack
            .iter()
            .take_while(|e| {
                enc.frames
                    .get(e)
                    .and_then(|f| f.lines.last())
                    .is_some_and(|l| is_allocation_function(&l.function))
            })
            .count();
        let ids = enc.stack(&bucket.stack[skip..], false);
        enc.builder().add_sample(
            ids,
            values.to_vec(),
            &[],
            &[("bytes", bucket.size as i64, "")],
        );
    }
    enc
}

/// The heap profile as it stood when the in-use estimate was highest (heaptrack's peak):
/// the heap profile's shape, its time the peak's, its default sample type inuse_space.
/// `start` is when the process (or fork child) started, in CLOCK_MONOTONIC nanoseconds.
/// None before any allocation was sampled.
pub fn heap_peak_profile(
    h: &HeapState,
    symbolizer: &mut Symbolizer,
    start_mono_ns: u64,
) -> Option<Profile> {
    let (buckets, peak) = h.peak.as_ref()?;
    let mut enc = heap_samples(buckets, h.rate, symbolizer);
    let after = peak.mono_ns.saturating_sub(start_mono_ns);
    enc.builder().set_time(peak.unix_ns, 0);
    enc.builder().add_comment(&format!(
        "heap peak: {} bytes in use (sampled estimate; the highest, or within 6.25 % of it) {}.{:03} s after the start",
        peak.bytes,
        after / 1_000_000_000,
        after / 1_000_000 % 1000
    ));
    Some(enc.finish())
}

/// The heap profile in Go's shape: alloc_objects, alloc_space, inuse_objects, inuse_space;
/// period space/bytes = the sampling rate; a numeric label `bytes` with the object size;
/// values unbiased per (stack, size) bucket. Comments carry exact allocation statistics.
/// `allocator_figures`: whether to add the allocator's own statistics (glibc's
/// `mallinfo2`, which takes every arena's lock; jemalloc's `mallctl`, which takes its own).
pub fn heap_profile(h: &HeapState, symbolizer: &mut Symbolizer) -> Profile {
    let mut enc = heap_samples(&h.buckets, h.rate, symbolizer);
    for c in heap_statistics(h) {
        enc.builder().add_comment(&c);
    }
    // The fields of Go's MemStats block that the lines above do not give, as
    // `/debug/pprof/heap?debug=1` has them.
    let given = ["Mallocs", "Frees", "HeapObjects", "TotalAlloc"];
    let rest: Vec<String> = h
        .memstats
        .iter()
        .copied()
        .filter(|(k, v)| !given.contains(k) && (*v != 0 || *k == "HeapReleased"))
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    enc.builder()
        .add_comment(&format!("runtime.MemStats: {}", rest.join(", ")));
    enc.finish()
}

/// MemStats-like lines: exact counts, glibc's own figures, the process's RSS.
fn heap_statistics(h: &HeapState) -> Vec<String> {
    let (mallocs, frees, bytes) = h.totals;
    let mut out = vec![
        format!("Mallocs = {mallocs} (allocation calls since start, exact)"),
        format!("Frees = {frees}"),
        format!(
            "HeapObjects = {} (blocks live: Mallocs - Frees, and in a fork child those it inherited)",
            h.live_objects
        ),
        format!("TotalAlloc = {bytes} bytes requested since start"),
    ];
    if let Some(m) = h.mallinfo {
        out.push(format!(
            "glibc mallinfo2: arena = {} bytes, mmapped (hblkhd) = {} bytes, in use (uordblks) = {} bytes, free (fordblks) = {} bytes, releasable (keepcost) = {} bytes",
            m[0], m[1], m[2], m[3], m[4]
        ));
    }
    if let Some((rss, peak)) = h.rss {
        out.push(format!("RSS = {rss} bytes, peak RSS = {peak} bytes"));
    }
    out
}

/// Go's `heap?debug=1` text: raw sampled counts (not unbiased), records by in-use bytes,
/// then the `# runtime.MemStats` block.
pub fn heap_text(h: &HeapState, symbolizer: &mut Symbolizer) -> String {
    use std::fmt::Write as _;
    let mut buckets = h.buckets.clone();
    buckets.sort_by_key(|b| std::cmp::Reverse(b.allocs.saturating_sub(b.frees) * b.size));
    let frames = symbolizer.resolve_all(buckets.iter().flat_map(|b| b.stack.iter().copied()));
    let mut t = [0u64; 4];
    for b in &buckets {
        let live = b.allocs.saturating_sub(b.frees);
        t[0] += live;
        t[1] += live * b.size;
        t[2] += b.allocs;
        t[3] += b.allocs * b.size;
    }
    let mut out = format!(
        "heap profile: {}: {} [{}: {}] @ heap/{}\n",
        t[0],
        t[1],
        t[2],
        t[3],
        2 * h.rate
    );
    for b in &buckets {
        let live = b.allocs.saturating_sub(b.frees);
        let _ = writeln!(
            out,
            "{}: {} [{}: {}] @{}",
            live,
            live * b.size,
            b.allocs,
            b.allocs * b.size,
            crate::symbols::encode::addresses(&b.stack, &frames)
        );
        crate::symbols::encode::frame_lines(&mut out, &b.stack, &frames);
    }
    out.push_str(&memstats_text(&h.memstats));
    out
}

/// Go's `# runtime.MemStats` block with the meaning each field can have in a C program
/// (README: "MemStats in a native program"): exact counters from the hooks, the
/// allocator's own figures from glibc's mallinfo2, RSS from /proc; fields that only a
/// garbage collector has are 0.
pub fn memstats_text(m: &[(&'static str, u64)]) -> String {
    let mut out = String::from("\n# runtime.MemStats\n");
    for (k, v) in m {
        if *k == "PauseNs" || *k == "PauseEnd" {
            out.push_str(&format!("# {k} = [{}]\n", vec!["0"; 256].join(" ")));
        } else if *k == "GCCPUFraction" {
            out.push_str(&format!("# {k} = 0\n"));
        } else if *k == "DebugGC" {
            out.push_str(&format!("# {k} = false\n"));
        } else if *k == "Stack" || *k == "MSpan" || *k == "MCache" {
            out.push_str(&format!("# {k} = {v} / {v}\n"));
        } else {
            out.push_str(&format!("# {k} = {v}\n"));
        }
    }
    out
}

/// The allocator's own figures: [allocated, in pages in use, held from the system, free
/// but held, returned to the system], from glibc's mallinfo2 or jemalloc's statistics.
fn allocator_figures() -> Option<[u64; 5]> {
    if let Some(m) = crate::symbols::maps::glibc_mallinfo2() {
        let (arena, mmapped, inuse, free) = (m[0] as u64, m[1] as u64, m[2] as u64, m[3] as u64);
        return Some([inuse + mmapped, inuse + mmapped, arena + mmapped, free, 0]);
    }
    let [allocated, active, mapped, retained] = crate::symbols::maps::jemalloc_stats()?;
    Some([
        allocated,
        active,
        mapped,
        mapped.saturating_sub(active),
        retained,
    ])
}

/// The MemStats fields in Go's order, for the text block, `/debug/vars` and the heap
/// files' comments. `allocator_figures_too`: whether to ask the allocator (it takes its locks:
/// not when a thread may be stopped holding one); its fields are 0 otherwise.
pub fn memstats(
    (mallocs, frees, total): (u64, u64, u64),
    live_objects: u64,
    allocator_figures_too: bool,
) -> Vec<(&'static str, u64)> {
    let [heap_alloc, heap_inuse, heap_sys, heap_idle, released] = allocator_figures_too
        .then(allocator_figures)
        .flatten()
        .unwrap_or_default();
    let stacks = crate::runtime::threads::stack_bytes();
    let max_rss = crate::symbols::maps::rss().map_or(0, |(_, peak)| peak);
    vec![
        ("Alloc", heap_alloc),
        ("TotalAlloc", total),
        ("Sys", heap_sys + stacks),
        ("Lookups", 0),
        ("Mallocs", mallocs),
        ("Frees", frees),
        ("HeapAlloc", heap_alloc),
        ("HeapSys", heap_sys),
        ("HeapIdle", heap_idle),
        ("HeapInuse", heap_inuse),
        ("HeapReleased", released),
        ("HeapObjects", live_objects),
        ("Stack", stacks),
        ("MSpan", 0),
        ("MCache", 0),
        ("BuckHashSys", 0),
        ("GCSys", 0),
        ("OtherSys", 0),
        ("NextGC", 0),
        ("LastGC", 0),
        ("PauseNs", 0),
        ("PauseEnd", 0),
        ("NumGC", 0),
        ("NumForcedGC", 0),
        ("GCCPUFraction", 0),
        ("DebugGC", 0),
        ("MaxRSS", max_rss),
    ]
}
