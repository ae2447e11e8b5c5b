//! Turns recorded stacks into profile.proto: the mappings seen while profiling, locations
//! symbolized in-process (what could not be symbolized keeps its address and mapping so
//! that pprof can symbolize it from the binary), and the Go shape of each profile kind.

use std::collections::HashMap;

use rprof_profile::{names, Builder, MappingInfo, Profile};

use crate::kinds::cpu::CpuData;
use crate::kinds::heap;
use crate::symbols::maps::MapEntry;
use crate::symbols::symbolize::{Frame, Symbolizer};

/// What symbolization found for the locations of one mapping, to set its has_* flags.
#[derive(Default, Clone, Copy)]
struct Coverage {
    locations: u32,
    with_function: u32,
    with_file: u32,
    with_line: u32,
}

/// Adds stacks of resolved frames to a builder, one location per frame.
pub struct StackEncoder {
    builder: Builder,
    pub frames: HashMap<u64, Frame>,
    /// Profile mapping id of each of the symbolizer's mappings (1-based; the main program first).
    mapping_ids: Vec<u64>,
    coverage: Vec<Coverage>,
    locations: HashMap<u64, u64>,
}

impl StackEncoder {
    /// `frames` resolves every stack entry that will be added; `mappings` are the ones
    /// the frames refer to.
    pub fn new(mut builder: Builder, frames: HashMap<u64, Frame>, mappings: &[MapEntry]) -> Self {
        let mut order: Vec<usize> = (0..mappings.len()).collect();
        let exe = std::fs::read_link(crate::symbols::maps::proc_path("exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        order.sort_by_key(|&i| mappings[i].path != exe);
        let mut mapping_ids = vec![0; mappings.len()];
        for i in order {
            let m = &mappings[i];
            mapping_ids[i] = builder.add_mapping(&MappingInfo {
                memory_start: m.start,
                memory_limit: m.end,
                file_offset: m.offset,
                filename: m.path.clone(),
                build_id: m.build_id.clone(),
                ..MappingInfo::default()
            });
        }
        StackEncoder {
            builder,
            frames,
            coverage: vec![Coverage::default(); mapping_ids.len()],
            mapping_ids,
            locations: HashMap::new(),
        }
    }

    /// An encoder for profiles whose stacks are `stacks`: resolves all their entries in
    /// one batch and stamps the profile with the current time.
    pub fn for_stacks<'s>(
        builder: Builder,
        stacks: impl Iterator<Item = &'s [u64]>,
        symbolizer: &mut Symbolizer,
    ) -> Self {
        let entries: std::collections::HashSet<u64> = stacks.flatten().copied().collect();
        let frames = symbolizer.resolve_all(entries);
        let mut enc = StackEncoder::new(builder, frames, &symbolizer.mappings);
        enc.builder.set_time(unix_now_ns(), 0);
        enc
    }

    pub fn builder(&mut self) -> &mut Builder {
        &mut self.builder
    }

    fn location(&mut self, entry: u64) -> Option<u64> {
        if let Some(&loc) = self.locations.get(&entry) {
            return Some(loc);
        }
        let frame = self.frames.get(&entry)?;
        let lines = &frame.lines;
        let known = |ok: bool| u32::from(ok && !lines.is_empty());
        if let Some(c) = frame.mapping.and_then(|m| self.coverage.get_mut(m)) {
            c.locations += 1;
            c.with_function += known(true);
            c.with_file += known(lines.iter().all(|l| !l.filename.is_empty()));
            c.with_line += known(lines.iter().all(|l| l.line > 0));
        }
        let mapping_id = frame
            .mapping
            .and_then(|m| self.mapping_ids.get(m).copied())
            .unwrap_or(0);
        let loc = self.builder.location(frame.address, mapping_id, lines);
        self.locations.insert(entry, loc);
        Some(loc)
    }

    /// Location ids for a stack (leaf first); a truncated stack ends in a synthetic frame.
    /// An empty stack (an overflow bucket) becomes the synthetic lost-samples frame.
    /// rprof's own frames are left out, except at the leaf end, where they are real time
    /// spent in rprof (its pthread_create trampoline sits under every thread otherwise).
    pub fn stack(&mut self, entries: &[u64], truncated: bool) -> Vec<u64> {
        if entries.is_empty() {
            return vec![self.builder.synthetic_location(names::LOST_SAMPLES_FRAME)];
        }
        let mut ids = Vec::with_capacity(entries.len() + 1);
        for e in shown(entries, &self.frames) {
            ids.extend(self.location(e));
        }
        if truncated {
            ids.push(self.builder.synthetic_location(names::TRUNCATED_FRAME));
        }
        ids
    }

    /// Finishes the profile, setting each mapping's has_* flags to what holds for all of
    /// its locations.
    pub fn finish(self) -> Profile {
        let mut p = self.builder.finish();
        for (i, c) in self.coverage.iter().enumerate() {
            let Some(m) = self
                .mapping_ids
                .get(i)
                .and_then(|&id| p.mapping.get_mut(id as usize - 1))
            else {
                continue;
            };
            let all = |n: u32| c.locations > 0 && n == c.locations;
            m.has_functions = all(c.with_function);
            m.has_filenames = all(c.with_file);
            m.has_line_numbers = all(c.with_line);
            m.has_inline_frames = all(c.with_line);
        }
        p
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn unix_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The CPU profile in Go's shape: samples/count and cpu/nanoseconds, period 1e9/hz.
pub fn cpu_profile(
    data: &CpuData,
    symbolizer: &mut Symbolizer,
    period_ns: u64,
    start_unix_ns: i64,
    duration_ns: i64,
) -> Profile {
    let period = period_ns as i64;
    let b = Builder::new(
        &[
            (names::SAMPLES, names::COUNT),
            (names::CPU, names::NANOSECONDS),
        ],
        (names::CPU, names::NANOSECONDS),
        period,
    );
    let mut enc =
        StackEncoder::for_stacks(b, data.counts.keys().map(|k| k.pcs.as_slice()), symbolizer);
    enc.builder().set_time(start_unix_ns, duration_ns);
    let mut samples: Vec<_> = data.counts.iter().collect();
    samples.sort_by(|a, b| b.1.cmp(a.1));
    for (key, &n) in samples {
        let ids = enc.stack(&key.pcs, key.truncated);
        let n = n as i64;
        // As Go's `-tagfocus`-able numeric labels: the kernel thread id tells apart threads
        // that share a name.
        let tid = [("thread_id", i64::from(key.tid), "")];
        let nums: &[(&str, i64, &str)] = if key.tid > 0 { &tid } else { &[] };
        enc.builder()
            .add_sample(ids, vec![n, n * period], &[("thread", &key.thread)], nums);
    }
    let unsampled = crate::runtime::masks::unsampleable();
    if unsampled > 0 {
        enc.builder().add_comment(&format!(
            "rprof: {unsampled} thread(s) blocked the CPU timer signal with a raw system call and were not sampled"
        ));
    }
    let found = crate::kinds::cpu::threads_found_later();
    if found > 0 {
        enc.builder().add_comment(&format!(
            "rprof: {found} thread(s) were found running rather than seen starting (made through a pthread_create found past rprof's, or a raw clone): sampled from when they were found (within 200 ms, where rprof's thread runs), their stacks whole once they waited in a call rprof hooks or had an allocation sampled, their innermost frame alone before"
        ));
    }
    let leaf_only = crate::signal_safe::unwind::leaf_only_walks();
    if leaf_only > 0 {
        enc.builder().add_comment(&format!(
            "rprof: {leaf_only} stack(s) kept only their innermost frame (too little stack left below the interrupted code to walk it)"
        ));
    }
    let dropped = crate::runtime::log::dropped();
    if dropped > 0 {
        enc.builder().add_comment(&format!(
            "rprof: {dropped} diagnostic line(s) dropped: fd 2 was no longer the stderr found at load"
        ));
    }
    if data.lost > 0 {
        let lost = enc.builder().synthetic_location(names::LOST_SAMPLES_FRAME);
        let n = data.lost as i64;
        enc.builder()
            .add_sample(vec![lost], vec![n, n * period], &[], &[]);
    }
    enc.finish()
}

/// Leaf frames that are allocation functions themselves (C++'s operator new calls malloc):
/// a heap stack starts at their caller, as Go's start at the allocating function.
fn is_allocation_function(name: &str) -> bool {
    name.starts_with("operator new")
}

/// A heap profile's builder holding one sample per bucket with any allocation.
fn heap_samples(buckets: &[heap::Bucket], symbolizer: &mut Symbolizer) -> StackEncoder {
    let rate = heap::rate();
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
        let values = heap::scaled(bucket, rate);
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
pub fn heap_peak_profile(symbolizer: &mut Symbolizer, start_mono_ns: u64) -> Option<Profile> {
    let (buckets, peak) = heap::peak()?;
    let mut enc = heap_samples(&buckets, symbolizer);
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
pub fn heap_profile(symbolizer: &mut Symbolizer, allocator_figures: bool) -> Profile {
    let mut enc = heap_samples(&heap::buckets(), symbolizer);
    for c in heap_statistics(allocator_figures) {
        enc.builder().add_comment(&c);
    }
    // The fields of Go's MemStats block that the lines above do not give, as
    // `/debug/pprof/heap?debug=1` has them.
    let given = ["Mallocs", "Frees", "HeapObjects", "TotalAlloc"];
    let rest: Vec<String> = memstats(allocator_figures)
        .into_iter()
        .filter(|(k, v)| !given.contains(k) && (*v != 0 || *k == "HeapReleased"))
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    enc.builder()
        .add_comment(&format!("runtime.MemStats: {}", rest.join(", ")));
    enc.finish()
}

/// MemStats-like lines: exact counts, glibc's own figures, the process's RSS.
fn heap_statistics(allocator_figures: bool) -> Vec<String> {
    let (mallocs, frees, bytes) = heap::totals();
    let mut out = vec![
        format!("Mallocs = {mallocs} (allocation calls since start, exact)"),
        format!("Frees = {frees}"),
        format!(
            "HeapObjects = {} (blocks live: Mallocs - Frees, and in a fork child those it inherited)",
            heap::live_objects(mallocs, frees)
        ),
        format!("TotalAlloc = {bytes} bytes requested since start"),
    ];
    if let Some(m) = allocator_figures
        .then(crate::symbols::maps::glibc_mallinfo2)
        .flatten()
    {
        out.push(format!(
            "glibc mallinfo2: arena = {} bytes, mmapped (hblkhd) = {} bytes, in use (uordblks) = {} bytes, free (fordblks) = {} bytes, releasable (keepcost) = {} bytes",
            m[0], m[1], m[2], m[3], m[4]
        ));
    }
    if let Some((rss, peak)) = crate::symbols::maps::rss() {
        out.push(format!("RSS = {rss} bytes, peak RSS = {peak} bytes"));
    }
    out
}

/// A block or mutex profile in Go's shape (one writer for both, unlike Go's near-copies):
/// contentions/count and delay/nanoseconds, period type contentions/count, period 1;
/// `scale` multiplies every value (the mutex fraction; 1 for block, whose buckets are
/// already unbiased). Each sample has a `lock` label with the object's address.
pub fn contention_profile(
    buckets: &[crate::kinds::contention::EventBucket],
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

/// The entries of a stack that profiles show: rprof's own frames are left out, except at
/// the leaf end, where they are real time spent in rprof (its pthread_create trampoline
/// and lock hooks sit under the program's frames otherwise).
pub fn shown(stack: &[u64], frames: &HashMap<u64, Frame>) -> Vec<u64> {
    let mut at_leaf = true;
    stack
        .iter()
        .copied()
        .filter(|e| {
            let own = frames.get(e).is_some_and(|f| f.own);
            at_leaf &= own;
            !own || at_leaf
        })
        .collect()
}

/// A count profile in Go's shape (goroutine, threadcreate): `<kind>/count` samples,
/// period type `<kind>/count`, period 1; records of (stack, thread name, count), the name
/// as a `thread` label when there is one.
pub fn count_profile(
    kind: &str,
    records: &[(Vec<u64>, String, u64)],
    symbolizer: &mut Symbolizer,
) -> Profile {
    let b = Builder::new(&[(kind, names::COUNT)], (kind, names::COUNT), 1);
    let mut enc = StackEncoder::for_stacks(b, records.iter().map(|r| r.0.as_slice()), symbolizer);
    for (stack, label, n) in records {
        let ids = enc.stack(stack, false);
        let labels: Vec<(&str, &str)> = if label.is_empty() {
            Vec::new()
        } else {
            vec![("thread", label.as_str())]
        };
        enc.builder().add_sample(ids, vec![*n as i64], &labels, &[]);
    }
    enc.finish()
}

/// One line of a text stack: a frame's address, the (inlined) call it names if known, and
/// its offset into its symbol.
pub struct TextFrame<'a> {
    pub address: u64,
    pub line: Option<&'a rprof_profile::LineInfo>,
    pub offset: u64,
}

/// The lines the text formats print for a stack: the frames profiles show (`shown`), one
/// per inlined call, innermost first.
pub fn text_frames<'a>(stack: &[u64], frames: &'a HashMap<u64, Frame>) -> Vec<TextFrame<'a>> {
    let mut out = Vec::new();
    for pc in shown(stack, frames) {
        let f = frames.get(&pc);
        let address = f.map_or(pc, |f| f.address);
        let offset = f.and_then(|f| f.symbol_offset).unwrap_or(0);
        match f.filter(|f| !f.lines.is_empty()) {
            Some(f) => out.extend(f.lines.iter().map(|l| TextFrame {
                address,
                line: Some(l),
                offset,
            })),
            None => out.push(TextFrame {
                address,
                line: None,
                offset,
            }),
        }
    }
    out
}

/// `#` lines naming the frames of a stack, as Go's printStackRecord writes them:
/// `#\t<pc>\t<function>+<offset into its symbol>\t<file>:<line>`, one per inlined call,
/// or `#\t<pc>` alone where nothing is known; a blank line after.
pub fn frame_lines(out: &mut String, stack: &[u64], frames: &HashMap<u64, Frame>) {
    use std::fmt::Write as _;
    for t in text_frames(stack, frames) {
        let _ = match t.line {
            Some(l) => writeln!(
                out,
                "#\t{:#x}\t{}+{:#x}\t{}:{}",
                t.address, l.function, t.offset, l.filename, l.line
            ),
            None => writeln!(out, "#\t{:#x}", t.address),
        };
    }
    out.push('\n');
}

pub fn addresses(stack: &[u64], frames: &HashMap<u64, Frame>) -> String {
    shown(stack, frames)
        .iter()
        .map(|pc| format!(" {:#x}", frames.get(pc).map_or(*pc, |f| f.address)))
        .collect()
}

/// Go's `heap?debug=1` text: raw sampled counts (not unbiased), records by in-use bytes,
/// then the `# runtime.MemStats` block.
pub fn heap_text(symbolizer: &mut Symbolizer) -> String {
    use std::fmt::Write as _;
    let mut buckets = heap::buckets();
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
        2 * heap::rate()
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
            addresses(&b.stack, &frames)
        );
        frame_lines(&mut out, &b.stack, &frames);
    }
    out.push_str(&memstats_text());
    out
}

/// Go's block (`--- contention:`) or mutex (`--- mutex:`) text. Delays are nanoseconds,
/// so cycles/second is 1e9.
pub fn contention_text(symbolizer: &mut Symbolizer, mutex: bool) -> String {
    use std::fmt::Write as _;
    let (block, mutexes) = crate::kinds::contention::buckets();
    let buckets = if mutex { mutexes } else { block };
    let frames = symbolizer.resolve_all(buckets.iter().flat_map(|b| b.stack.iter().copied()));
    let mut out = String::from(if mutex {
        "--- mutex:\n"
    } else {
        "--- contention:\n"
    });
    out.push_str("cycles/second=1000000000\n");
    if mutex {
        let _ = writeln!(
            out,
            "sampling period={}",
            crate::kinds::contention::mutex_fraction()
        );
    }
    for b in &buckets {
        let _ = writeln!(
            out,
            "{} {} @{}",
            b.delay_ns.round() as i64,
            b.count.round() as i64,
            addresses(&b.stack, &frames)
        );
        frame_lines(&mut out, &b.stack, &frames);
    }
    out
}

/// Go's `# runtime.MemStats` block with the meaning each field can have in a C program
/// (README: "MemStats in a native program"): exact counters from the hooks, the
/// allocator's own figures from glibc's mallinfo2, RSS from /proc; fields that only a
/// garbage collector has are 0.
pub fn memstats_text() -> String {
    let m = memstats(true);
    let mut out = String::from("\n# runtime.MemStats\n");
    for (k, v) in &m {
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
pub fn memstats(allocator_figures_too: bool) -> Vec<(&'static str, u64)> {
    let (mallocs, frees, total) = heap::totals();
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
        ("HeapObjects", heap::live_objects(mallocs, frees)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples that find the store full are counted, read as `lost`, and written as a
    /// sample of the synthetic frame `rprof::lost_samples` standing for all of them.
    #[test]
    fn lost_samples_reach_the_written_profile() {
        let store = crate::signal_safe::trace_store::TraceStore::new();
        assert!(store.init());
        let before = crate::kinds::cpu::snapshot_of(&store);
        let pushed = crate::signal_safe::trace_store::MAX_ENTRIES as u64 + 500;
        let pc = lost_samples_reach_the_written_profile as *const () as u64;
        for i in 0..pushed {
            store.record(2, [0; 16], 0, |pcs| {
                pcs[0] = pc;
                pcs[1] = i;
                (2, false)
            });
        }
        let data =
            crate::kinds::cpu::window_of(&store, &before, &crate::kinds::cpu::snapshot_of(&store));
        assert!(data.lost > 0, "more distinct stacks than the store holds");
        let kept: u64 = data.counts.values().sum();
        assert_eq!(kept + data.lost, 2 * pushed);
        let mut symbolizer = Symbolizer::new();
        let p = cpu_profile(&data, &mut symbolizer, 4_000_000, 0, 1);
        let bytes = rprof_profile::encode_gzip(&p);
        let p = rprof_profile::decode(&bytes).unwrap();
        rprof_profile::check_valid(&p).unwrap();
        let (locs, funcs) = (p.location_by_id(), p.function_by_id());
        let lost: Vec<_> = p
            .sample
            .iter()
            .filter(|s| {
                p.frames(s, &locs, &funcs)
                    .iter()
                    .any(|f| f.function == rprof_profile::names::LOST_SAMPLES_FRAME)
            })
            .collect();
        assert_eq!(lost.len(), 1);
        let n = data.lost as i64;
        assert_eq!(lost[0].value, vec![n, n * 4_000_000]);
    }
}
