//! Heap profiles of c_tests programs with known allocations.
//!
//! With RPROF_HEAP_RATE=1 every allocation is recorded and every figure must be exact.
//! At the default rate (512 KiB) a block of size s is sampled with probability
//! p = 1 − exp(−s/rate) and counted as 1/p blocks, so a site of N blocks of size s has an
//! unbiased estimate with standard deviation s·sqrt(N(1−p)/p); tests allow 5 of those
//! (`sigma` below). For the 64 MiB site of 2 MiB blocks that is 2.4 % (bound 12 %).

mod common;

use std::collections::HashMap;

use common::*;
use rprof_profile::Profile;

const MIB: i64 = 1 << 20;
const RATE: f64 = 524_288.0;

/// Standard deviation of the estimated bytes of `count` blocks of `size` at the default rate.
fn sigma(count: f64, size: f64) -> f64 {
    sigma_at(RATE, count, size)
}

/// The same at sampling rate `rate`.
fn sigma_at(rate: f64, count: f64, size: f64) -> f64 {
    let p = 1.0 - (-size / rate).exp();
    size * (count * (1.0 - p) / p).sqrt()
}

/// `got` is within 5 standard deviations `sd` of `truth`.
fn within(what: &str, got: i64, truth: f64, sd: f64) {
    assert!(
        (got as f64 - truth).abs() <= 5.0 * sd,
        "{what}: {got} vs {truth} ± {:.0} (5 sigma)",
        5.0 * sd
    );
}

/// The default rate's estimate of `count` blocks of `size` each far larger than the rate:
/// a whole number of sampled blocks, each counted as size/p, so between (count − k)·size/p
/// and count·size/p, where k misses have a binomial chance below 1e-7. (Misses are rare
/// and lumpy there, and the normal bound of `within` too narrow: 4 of 32 blocks of 2 MiB
/// missed, about once in 250 runs, fell outside its 5 sigma.)
fn within_blocks(what: &str, got: i64, count: u64, size: f64) {
    let p = 1.0 - (-size / RATE).exp();
    let q = 1.0 - p;
    let n = count as i32;
    let choose = |k: i32| -> f64 { (0..k).map(|i| (n - i) as f64 / (i + 1) as f64).product() };
    let tail = |k: i32| -> f64 { (k..=n).map(|j| choose(j) * q.powi(j) * p.powi(n - j)).sum() };
    let k = (0..=n).find(|&k| tail(k) < 1e-7).unwrap_or(n);
    let each = size / p;
    let (lo, hi) = ((n - k) as f64 * each, n as f64 * each);
    assert!(
        got as f64 >= lo * 0.999 && got as f64 <= hi * 1.001,
        "{what}: {got} outside [{lo:.0}, {hi:.0}] ({count} blocks of {size}, up to {k} missed)"
    );
}

fn heap_file(r: &Run) -> Profile {
    let f = r
        .files()
        .into_iter()
        .find(|f| f.to_string_lossy().contains(".heap."))
        .expect("a heap profile");
    load(&f)
}

/// The run's heap-peak file (written at exit).
fn peak_file(r: &Run) -> Profile {
    let f = r
        .files()
        .into_iter()
        .find(|f| f.to_string_lossy().ends_with(".heap-peak.pb.gz"))
        .expect("a heap-peak file");
    load(&f)
}

/// Per (leaf function, bytes label): the four values.
fn by_leaf_and_size(p: &Profile) -> HashMap<(String, i64), [i64; 4]> {
    let (locs, funcs) = (p.location_by_id(), p.function_by_id());
    let mut out: HashMap<(String, i64), [i64; 4]> = HashMap::new();
    for s in &p.sample {
        let leaf = p.frames(s, &locs, &funcs)[0].function.to_owned();
        let size = p.label_num(s, "bytes").expect("bytes label");
        let e = out.entry((leaf, size)).or_default();
        for (a, v) in e.iter_mut().zip(&s.value) {
            *a += v;
        }
    }
    out
}

/// A library loaded and unloaded 300 times allocates 150 blocks of 64 bytes each time and
/// leaves 50 live: at rate 1, every one is in the profile under its own function, whose
/// library is gone when the profile is written (its frames were pinned at each dlclose).
#[test]
fn allocations_of_unloaded_libraries_are_all_kept_at_rate_one() {
    let prog = build("dlopen_loop");
    let plugin = build("libplugin.so");
    let args = [plugin.to_str().unwrap(), "150"];
    let r = run("heap-dlopen", &prog, &args, &[("RPROF_HEAP_RATE", "1")]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let p = heap_file(&r);
    let sites = by_leaf_and_size(&p);
    assert_eq!(
        sites.get(&("plugin_alloc".to_owned(), 64)).copied(),
        Some([45_000, 45_000 * 64, 15_000, 15_000 * 64]),
        "{:?}",
        sites.keys().collect::<Vec<_>>()
    );
    assert!(p
        .mapping
        .iter()
        .any(|m| p.str(m.filename).ends_with("libplugin.so")));
}

/// Two threads each load and unload a library of their own, at rate 1: while one pins its
/// samples before dlclose, the other's dlclose frees the loader's blocks holding the
/// loader's lock. The program ends (it once deadlocked: the pinning held the heap table
/// while it waited for that lock), and every allocation is in the profile.
#[test]
fn concurrent_dlcloses_at_rate_one_end_and_keep_every_allocation() {
    let prog = build("dlopen_threads");
    let plugin = build("libplugin.so");
    let second = plugin.with_file_name("libplugin_second.so");
    std::fs::copy(&plugin, &second).unwrap();
    let dir = out_dir("heap-dlopen-threads");
    let mut child = spawn(
        &prog,
        &[plugin.to_str().unwrap(), second.to_str().unwrap(), "1000"],
        &[("RPROF_HEAP_RATE", "1")],
        &dir,
    );
    let status = wait_at_most(&mut child, std::time::Duration::from_secs(30))
        .expect("still running after 30 s (under 1 s is usual): deadlocked");
    assert!(status.success(), "{status:?}");
    let files = files_of(&dir, "heap");
    let heap = files
        .iter()
        .find(|f| f.to_string_lossy().ends_with(".heap.pb.gz"))
        .unwrap_or_else(|| panic!("{files:?}"));
    let sites = by_leaf_and_size(&load(heap));
    assert_eq!(
        sites.get(&("plugin_alloc".to_owned(), 64)).copied(),
        Some([60_000, 60_000 * 64, 0, 0]),
        "{:?}",
        sites.keys().collect::<Vec<_>>()
    );
}

#[test]
fn every_allocation_is_exact_at_rate_one() {
    let prog = build("heap_sites");
    let r = run(
        "heap-exact",
        &prog,
        &["64"],
        &[("RPROF_HEAP_RATE", "1"), ("RPROF_LOG", "debug")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.output.stdout, run_plain(&prog, &["64"]).stdout);
    let p = heap_file(&r);
    assert_eq!(
        p.sample_type_names(),
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    let pt = p.period_type.unwrap();
    assert_eq!(
        (p.str(pt.r#type), p.str(pt.unit), p.period),
        ("space", "bytes", 1)
    );
    let sites = by_leaf_and_size(&p);
    let at = |f: &str, size: i64| {
        sites
            .get(&(f.to_owned(), size))
            .copied()
            .unwrap_or_default()
    };
    assert_eq!(at("keep_live", 2 * MIB), [32, 64 * MIB, 32, 64 * MIB]);
    assert_eq!(at("churn", 65536), [25, 25 * 65536, 0, 0]);
    assert_eq!(at("mixed_site", MIB), [8, 8 * MIB, 8, 8 * MIB]);
    assert_eq!(at("mixed_site", 16), [16384, 16384 * 16, 16384, 16384 * 16]);
    assert_eq!(at("leak_calloc", 262_144), [1, 262_144, 1, 262_144]);
    assert_eq!(at("leak_realloc", 100), [1, 100, 0, 0]);
    assert_eq!(at("leak_realloc", 300_000), [1, 300_000, 1, 300_000]);
    // A realloc that fails leaves the block allocated, and tracked.
    assert_eq!(at("kept_after_failed_realloc", 5000), [1, 5000, 1, 5000]);
    assert_eq!(at("leak_posix_memalign", 200_000), [1, 200_000, 1, 200_000]);
    assert_eq!(at("leak_aligned_alloc", 409_600), [1, 409_600, 1, 409_600]);
    assert_eq!(at("leak_memalign", 123_456), [1, 123_456, 1, 123_456]);
    assert_eq!(at("leak_valloc", 333_333), [1, 333_333, 1, 333_333]);
    // Stacks start at the allocating function: no rprof frame, no allocator frame.
    for f in function_names(&p) {
        assert!(
            !f.starts_with("rprof")
                && !["malloc", "calloc", "realloc", "free"].contains(&f.as_str()),
            "{f} in a heap stack"
        );
    }
    let comments = p.comments().join("\n");
    assert!(
        comments.contains("Mallocs = ") && comments.contains("glibc mallinfo2"),
        "{comments}"
    );
    let mallocs = statistic(&p, "Mallocs");
    // At least every allocation the program made (the C library makes a few more).
    assert!(mallocs >= 32 + 25 + 8 + 16384 + 8, "{mallocs}");
    // At rate 1 every free is of a sampled block, so every free is looked up. That
    // internal figure is for RPROF_LOG=debug, not for the profile's readers.
    assert!(
        r.stderr().contains("frees passed the slot test"),
        "{}",
        r.stderr()
    );
    assert!(!comments.contains("slot test"), "{comments}");
    if let Some(top) = go_pprof_top(
        &r.files()
            .into_iter()
            .find(|f| f.to_string_lossy().contains(".heap."))
            .unwrap(),
        &["-sample_index=inuse_space"],
    ) {
        assert!(top.contains("keep_live") && top.contains("64MB"), "{top}");
    }
}

#[test]
fn default_rate_estimates_are_unbiased_within_bounds() {
    let prog = build("heap_sites");
    let r = run("heap-default", &prog, &[], &[("RPROF_LOG", "debug")]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let p = heap_file(&r);
    assert_eq!(p.period, 524_288);
    let s_in = summarize(&p, "inuse_space");
    let s_alloc = summarize(&p, "alloc_space");
    // The cheap test keeps almost every free of an unsampled block off the lock.
    let stderr = r.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("frees passed the slot test"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (looked_up, frees, sampled) = (numbers[0], numbers[1], numbers[2]);
    // Stacks seen before are walked from the unwinder's rule cache: only a site's first
    // samples (whose rules are not cached yet) are walked in full.
    let (full, samples) = (numbers[3], numbers[4]);
    assert!(samples > 100 && full * 10 < samples, "{line}");
    // Frees looked up in vain (their slot holds a sampled block, they are not one): few.
    assert!(
        frees > 1000 && (looked_up - sampled) * 100 < frees,
        "{line}"
    );
    within_blocks(
        "keep_live in use",
        s_in.flat("keep_live"),
        32,
        2.0 * MIB as f64,
    );
    within(
        "churn allocated",
        s_alloc.flat("churn"),
        100.0 * 1600.0 * 65536.0 / 100.0,
        sigma(1600.0, 65536.0),
    );
    assert_eq!(
        s_in.flat("churn"),
        0,
        "everything churn allocated was freed"
    );
    // One site, two sizes: estimated per size, so the total is right.
    let mixed_sd = (sigma(8.0, MIB as f64).powi(2) + sigma(1_048_576.0, 16.0).powi(2)).sqrt();
    within(
        "mixed_site in use",
        s_in.flat("mixed_site"),
        (8 * MIB + 16 * MIB) as f64,
        mixed_sd,
    );
    // go tool pprof opens a heap profile on inuse_space.
    if let Some(top) = go_pprof_top(
        &r.files()
            .into_iter()
            .find(|f| f.to_string_lossy().contains(".heap."))
            .unwrap(),
        &[],
    ) {
        assert!(
            top.contains("Type: inuse_space") && top.contains("keep_live"),
            "{top}"
        );
    }
}

#[test]
fn frees_in_another_thread_are_seen() {
    let prog = build("heap_threads");
    let r = run("heap-threads", &prog, &[], &[("RPROF_HEAP_RATE", "1")]);
    assert!(r.output.status.success());
    assert_eq!(r.stdout(), "heap_threads done\n");
    let sites = by_leaf_and_size(&heap_file(&r));
    assert_eq!(
        sites[&("produce_site".into(), 4096)],
        [2000, 2000 * 4096, 0, 0]
    );
    assert_eq!(
        sites[&("consume_site".into(), 8192)],
        [100, 100 * 8192, 100, 100 * 8192]
    );
}

#[test]
fn cxx_new_delete_and_containers() {
    let prog = build("heap_cxx");
    let r = run("heap-cxx", &prog, &[], &[("RPROF_HEAP_RATE", "1")]);
    assert!(r.output.status.success());
    assert_eq!(r.output.stdout, run_plain(&prog, &[]).stdout);
    let p = heap_file(&r);
    let inuse = summarize(&p, "inuse_space");
    let objects = summarize(&p, "inuse_objects");
    let allocs = summarize(&p, "alloc_objects");
    let alloc_space = summarize(&p, "alloc_space");
    // operator new is not the leaf: the function calling `new` is.
    assert_eq!(objects.flat("make_widgets"), 1000);
    assert_eq!(inuse.flat("make_widgets"), 64_000);
    assert_eq!(allocs.flat("drop_widgets"), 500);
    assert_eq!(inuse.cum("drop_widgets"), 0);
    assert_eq!(
        alloc_space.cum("fill_vector"),
        4 * ((1 << 18) - 1),
        "every buffer it grew through"
    );
    assert_eq!(
        allocs.cum("build_map"),
        2000,
        "1000 tree nodes and 1000 strings"
    );
    // The exit-time profile comes after static destructors freed the containers.
    assert_eq!(inuse.cum("fill_vector") + inuse.cum("build_map"), 0);
    assert!(!function_names(&p)
        .iter()
        .any(|f| f.starts_with("operator new")));
}

#[test]
fn forked_child_profiles_its_allocations() {
    let prog = build("heap_fork");
    let r = run("heap-fork", &prog, &[], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let child = r.printed("child") as u32;
    let child_p = summarize(&r.final_profile(child, "heap"), "inuse_space");
    let parent_file = r
        .files()
        .into_iter()
        .find(|f| {
            let s = f.to_string_lossy();
            s.contains(".heap.") && !s.contains(&format!(".{child}."))
        })
        .unwrap();
    let parent_p = summarize(&load(&parent_file), "inuse_space");
    let sd = sigma(16.0, 2.0 * MIB as f64);
    assert!((child_p.flat("child_site") - 32 * MIB).abs() as f64 <= 5.0 * sd);
    assert_eq!(parent_p.flat("child_site"), 0);
    assert!(parent_p.flat("parent_site") > 0);
}

#[test]
fn programs_own_allocator_is_used_and_profiled() {
    let Some(preload) = jemalloc_preload() else {
        return;
    };
    let prog = build("heap_sites");
    let dir = out_dir("heap-jemalloc");
    let out = command(&prog, &[], &[], &dir)
        .env("LD_PRELOAD", preload)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"heap_sites done\n");
    let f = files_in(&dir)
        .into_iter()
        .find(|f| f.to_string_lossy().contains(".heap."))
        .unwrap();
    let p = load(&f);
    let s = summarize(&p, "inuse_space");
    within_blocks(
        "keep_live in use",
        s.flat("keep_live"),
        32,
        2.0 * MIB as f64,
    );
    // The statistics do not pretend the heap is glibc's.
    assert!(!p.comments().join("\n").contains("glibc mallinfo2"));
}

#[test]
fn heap_rate_zero_turns_heap_profiling_off() {
    let prog = build("heap_sites");
    let r = run("heap-off", &prog, &["64"], &[("RPROF_HEAP_RATE", "0")]);
    assert!(r.output.status.success());
    assert!(r
        .files()
        .iter()
        .all(|f| !f.to_string_lossy().contains(".heap.")));
}

#[test]
fn counts_stay_exact_across_thread_exits() {
    // 2100 threads (1100 at once, then 1000 short ones reusing exited threads' counters);
    // two runs differing only in allocations per thread differ by exactly that many.
    let prog = build("heap_thread_churn");
    let counts = |k: &str| {
        let r = run(
            &format!("churn-{k}"),
            &prog,
            &[k],
            // Rate 1: the file is written even when nothing else would be sampled (a
            // process that recorded nothing writes no file).
            &[("RPROF_PROFILES", "heap"), ("RPROF_HEAP_RATE", "1")],
        );
        assert!(r.output.status.success(), "{}", r.stderr());
        let p = heap_file(&r);
        (statistic(&p, "Mallocs"), statistic(&p, "Frees"))
    };
    let (m0, f0) = counts("0");
    let (m1, f1) = counts("100");
    assert_eq!((m1 - m0, f1 - f0), (2100 * 100, 2100 * 100));
}

/// At RPROF_HEAP_RATE = 4096 the same program gives many samples, so tight bounds test the
/// unbiasing itself: mixed_site's 16 MiB of 16-byte blocks are each sampled with
/// probability 1 − exp(−16/4096) ≈ 0.4 %, about 4100 samples, relative sd 1.6 % (bound
/// 7.8 %); its 1 MiB blocks are always sampled. Counting each sample once, or correcting
/// one bucket of both sizes by their average size (jeprof's way), lands far outside.
#[test]
fn low_rate_estimates_are_tight() {
    let prog = build("heap_sites");
    let r = run("heap-4096", &prog, &[], &[("RPROF_HEAP_RATE", "4096")]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let p = heap_file(&r);
    assert_eq!(p.period, 4096);
    let rate = 4096.0;
    let sites = by_leaf_and_size(&p);
    let within = |what: &str, got: i64, truth: f64, sd: f64| {
        assert!(
            (got as f64 - truth).abs() <= 5.0 * sd,
            "{what}: {got} vs {truth} ± {:.0} (5 sd)",
            5.0 * sd
        );
    };
    let small = sites[&("mixed_site".to_owned(), 16)];
    let n = 1_048_576.0;
    within(
        "mixed_site 16 B in use",
        small[3],
        16.0 * n,
        sigma_at(rate, n, 16.0),
    );
    within(
        "mixed_site 16 B objects",
        small[2],
        n,
        sigma_at(rate, n, 16.0) / 16.0,
    );
    let big = sites[&("mixed_site".to_owned(), MIB)];
    within(
        "mixed_site 1 MiB in use",
        big[3],
        8.0 * MIB as f64,
        sigma_at(rate, 8.0, MIB as f64),
    );
    let s_alloc = summarize(&p, "alloc_space");
    within(
        "churn allocated",
        s_alloc.flat("churn"),
        1600.0 * 65536.0,
        sigma_at(rate, 1600.0, 65536.0),
    );
}

/// The statistics against what heap_sites did (argument 64), at rate 1 and at the default
/// rate (the counts are exact whatever the sampling: the bytes follow from the countdown,
/// which is reset at each sample): TotalAlloc is the bytes it asked for plus the C
/// library's few own allocations (stdio's buffer: at most 64 KiB), HeapObjects the blocks
/// still live at exit plus at most 16 of the C library's, and RSS as the program itself
/// read it just before exit, plus what writing the profile took.
#[test]
fn statistics_match_what_the_program_did() {
    for rate in ["1", "524288"] {
        statistics_match_at_rate(rate);
    }
}

fn statistics_match_at_rate(rate: &str) {
    let prog = build("heap_sites");
    let r = run(
        &format!("heap-stats-{rate}"),
        &prog,
        &["64"],
        &[("RPROF_HEAP_RATE", rate)],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    let p = heap_file(&r);
    let nsmall: i64 = 1_048_576 / 64;
    let requested = 32 * 2 * MIB
        + 25 * 65536
        + 8 * (nsmall + 8)
        + 8 * MIB
        + nsmall * 16
        + 256 * 1024
        + 100
        + 300_000
        + 200_000
        + 409_600
        + 123_456
        + 333_333
        + 5000;
    let total = statistic(&p, "TotalAlloc");
    assert!(
        (requested..=requested + 65536).contains(&total),
        "TotalAlloc {total}, the program asked for {requested} (rate {rate})"
    );
    let (mallocs, frees) = (statistic(&p, "Mallocs"), statistic(&p, "Frees"));
    let objects = statistic(&p, "HeapObjects");
    assert_eq!(objects, mallocs - frees);
    let live = 32 + 1 + 8 + nsmall + 1 + 1 + 4 + 1;
    assert!(
        (live..=live + 16).contains(&objects),
        "HeapObjects {objects}, {live} blocks live"
    );
    let stderr = r.stderr();
    let line = stderr.lines().find(|l| l.starts_with("rss=")).unwrap();
    let nums: Vec<i64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (rss, hwm) = (nums[0], nums[1]);
    assert!(rss > 64 * MIB, "{line}");
    let comments = p.comments().join("\n");
    let rss_line = comments.lines().find(|l| l.starts_with("RSS = ")).unwrap();
    let got: Vec<i64> = rss_line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        (rss - 4 * MIB..=rss + 64 * MIB).contains(&got[0]) && got[1] >= hwm && got[1] >= got[0],
        "{rss_line} vs the program's {line}"
    );
}

/// At rate 1 a forked child's heap file holds exactly its own allocations: 16 blocks of
/// 2 MiB at child_site, none of the parent's (inherited blocks are not counted, nor their
/// frees), and Mallocs counts the child's calls only.
#[test]
fn forked_child_heap_holds_exactly_its_own_allocations() {
    let prog = build("heap_fork");
    let r = run("heap-fork-exact", &prog, &[], &[("RPROF_HEAP_RATE", "1")]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let child = r.printed("child") as u32;
    let p = r.final_profile(child, "heap");
    let sites = by_leaf_and_size(&p);
    assert_eq!(
        sites[&("child_site".to_owned(), 2 * MIB)],
        [16, 32 * MIB, 16, 32 * MIB]
    );
    assert!(
        !sites.keys().any(|(f, _)| f == "parent_site"),
        "{:?}",
        sites.keys()
    );
    let alloc = summarize(&p, "alloc_space");
    assert!(
        alloc.total - 32 * MIB <= 64 << 10,
        "the child allocated 32 MiB and the C library's few: {}",
        alloc.total
    );
    let mallocs = statistic(&p, "Mallocs");
    assert!((16..=32).contains(&mallocs), "Mallocs = {mallocs}");
    // The blocks live in the child's heap: the 8 inherited, less the 4 it freed, and its
    // 16 (and the C library's few), though its Frees exceed its Mallocs by nothing.
    let objects = statistic(&p, "HeapObjects");
    assert!((20..=36).contains(&objects), "HeapObjects = {objects}");
}

/// A heap that peaks at a known size at known sites and frees everything: the peak file
/// holds those sites at those sizes (within sampling bounds), the exit file nothing in use;
/// a snapshot writes its own numbered peak file.
#[test]
fn the_peak_file_holds_the_heap_at_its_highest() {
    let prog = build("heap_peak");
    let r = run("heap-peak", &prog, &[], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let peak = peak_file(&r);
    assert_eq!(
        peak.sample_type_names(),
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    let s = summarize(&peak, "inuse_space");
    within(
        "peak_site",
        s.cum("peak_site"),
        64.0 * MIB as f64,
        sigma(1024.0, 65536.0),
    );
    within(
        "side_site",
        s.cum("side_site"),
        8.0 * MIB as f64,
        sigma(8192.0, 1024.0),
    );
    assert_eq!(s.cum("after_site"), 0, "after_site came after the peak");
    let comment = peak
        .comments()
        .into_iter()
        .find(|c| c.starts_with("heap peak: "))
        .expect("the peak's comment")
        .to_owned();
    assert!(comment.contains(" bytes in use"), "{comment}");
    assert!(peak.time_nanos > 0);
    let exit = summarize(&heap_file(&r), "inuse_space");
    assert_eq!(exit.total, 0, "everything was freed by exit");
    assert!(summarize(&heap_file(&r), "alloc_space").cum("after_site") > 0);

    let r = run("heap-peak-snapshot", &prog, &["snapshot"], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let numbered = r
        .files()
        .into_iter()
        .find(|f| f.to_string_lossy().ends_with(".heap-peak.1.pb.gz"))
        .unwrap_or_else(|| panic!("a numbered heap-peak file in {:?}", r.files()));
    assert!(summarize(&load(&numbered), "inuse_space").cum("peak_site") > 0);
}

/// The peak file holds the highest hump, whether it came first or last: a lower first hump
/// freed before a higher second gives the second's site and size (16 then 48 MiB), and the
/// reverse order the first's; the other hump is absent from the peak.
#[test]
fn the_peak_file_holds_the_higher_hump_in_either_order() {
    let prog = build("heap_humps");
    for (order, high, low) in [
        ("rising", "second_hump", "first_hump"),
        ("falling", "first_hump", "second_hump"),
    ] {
        for rate in ["1", "524288"] {
            let r = run("heap-humps", &prog, &[order], &[("RPROF_HEAP_RATE", rate)]);
            assert!(r.output.status.success(), "{}", r.stderr());
            let s = summarize(&peak_file(&r), "inuse_space");
            let sd = if rate == "1" {
                0.0
            } else {
                sigma(768.0, 65536.0)
            };
            within(
                &format!("{order} at rate {rate}: {high}"),
                s.cum(high),
                48.0 * MIB as f64,
                sd,
            );
            assert_eq!(s.cum(low), 0, "{order} at rate {rate}: {low} was freed");
        }
    }
}

/// Buckets are split by size, so a few stacks with many sizes make many buckets: the table
/// grows rather than dropping them under `rprof::lost_samples`. At rate 1, 20,000 live
/// blocks of distinct sizes from 8 sites are all there, exactly; at the default rate,
/// 300,000 blocks of distinct sizes from 512 KiB up (about 270,000 sampled, each its own
/// bucket) add up to the bytes allocated within sampling error.
#[test]
fn many_sizes_are_kept_not_dropped() {
    let prog = build("many_sizes");
    let sites = |p: &Profile, index: &str| -> i64 {
        let s = summarize(p, index);
        assert_eq!(
            s.cum(rprof_profile::names::LOST_SAMPLES_FRAME),
            0,
            "{:?}",
            s.functions()
        );
        (0..8).map(|k| s.cum(&format!("site{k}"))).sum()
    };
    let r = run(
        "many-sizes-live",
        &prog,
        &["live", "20000"],
        &[("RPROF_HEAP_RATE", "1")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(
        sites(&heap_file(&r), "inuse_space"),
        r.printed("live_bytes")
    );

    let r = run("many-sizes-churn", &prog, &["churn", "300000"], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let truth = r.printed("churn_bytes") as f64;
    // Sizes from 512 KiB to 5.1 MiB: the larger the block, the smaller its relative
    // variance, so 512 KiB blocks bound it.
    within(
        "alloc_space of the sites",
        sites(&heap_file(&r), "alloc_space"),
        truth,
        sigma(300_000.0, 512.0 * 1024.0) * (truth / (300_000.0 * 512.0 * 1024.0)),
    );
}
