//! Block and mutex profiles of c_tests/contention.c, whose waits are known.
//!
//! With RPROF_BLOCK_RATE=1 and RPROF_MUTEX_FRACTION=1 every wait is recorded, so delays
//! must match the waits the program measured around its sites (printed as wait_ns=N; on a
//! busy machine they exceed the sleeps) within 10 %. At a sampling rate the estimate is
//! unbiased; the bound used below is derived in `sampled_block_profile_is_unbiased`.

mod common;

use common::*;
use rprof_profile::Profile;

const MS: i64 = 1_000_000;

fn profile(r: &Run, kind: &str) -> Profile {
    let files = r.files_of(kind);
    assert_eq!(files.len(), 1, "{kind}: {files:?}");
    let p = load(&files[0]);
    assert_eq!(p.sample_type_names(), ["contentions", "delay"]);
    let pt = p.period_type.unwrap();
    assert_eq!((p.str(pt.r#type), p.str(pt.unit)), ("contentions", "count"));
    p
}

fn record_all(mode: &str) -> Run {
    let prog = build("contention");
    let r = run(
        &format!("contention-{mode}"),
        &prog,
        &[mode],
        &[("RPROF_BLOCK_RATE", "1"), ("RPROF_MUTEX_FRACTION", "1")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), format!("contention {mode} done\n"));
    r
}

/// The leaf of every sample that includes `site` is `entry` (the pthread call itself).
fn assert_leaf(p: &Profile, site: &str, entry: &str) {
    let (locs, funcs) = (p.location_by_id(), p.function_by_id());
    for s in &p.sample {
        let frames = p.frames(s, &locs, &funcs);
        if frames.iter().any(|f| f.function == site) {
            assert_eq!(frames[0].function, entry, "{frames:?}");
            assert_eq!(
                frames[1].function, site,
                "no library frame between: {frames:?}"
            );
        }
    }
}

#[test]
fn mutex_waits_at_waiter_and_holder() {
    let r = record_all("mutex");
    let block = profile(&r, "block");
    let b = summarize(&block, "delay");
    let waited = r.printed("wait_ns");
    assert!(waited >= 20 * 45 * MS, "the program waited {waited} ns");
    assert_within("block at waiter_site", b.cum("waiter_site"), waited, 0.10);
    assert_eq!(summarize(&block, "contentions").cum("waiter_site"), 20);
    assert_leaf(&block, "waiter_site", "pthread_mutex_lock");
    let mutex = profile(&r, "mutex");
    let m = summarize(&mutex, "delay");
    assert_within(
        "mutex at holder_section",
        m.cum("holder_section"),
        waited,
        0.10,
    );
    assert_leaf(&mutex, "holder_section", "pthread_mutex_unlock");
    // Every sample names its lock, the mutex whose address the program printed.
    let address = r
        .stderr()
        .lines()
        .find_map(|l| l.strip_prefix("lock=").map(str::to_owned))
        .unwrap();
    for (p, site) in [(&block, "waiter_site"), (&mutex, "holder_section")] {
        let (locs, funcs) = (p.location_by_id(), p.function_by_id());
        let at_site: Vec<_> = p
            .sample
            .iter()
            .filter(|s| {
                p.frames(s, &locs, &funcs)
                    .iter()
                    .any(|f| f.function == site)
            })
            .collect();
        assert!(!at_site.is_empty());
        for s in at_site {
            assert_eq!(p.label_str(s, "lock"), Some(address.as_str()), "{site}");
        }
    }
    if let Some(top) = go_pprof_top(&r.files_of("mutex")[0], &["-sample_index=delay"]) {
        assert!(
            top.contains("holder_section") && top.contains("pthread_mutex_unlock"),
            "{top}"
        );
    }
}

/// A library loaded and unloaded 30 times makes one contended wait each time, on a mutex
/// of its own held by a thread of its own: every wait is in the profiles under the
/// library's functions, whose library is gone when the files are written (their frames
/// were pinned at each dlclose, the buckets of each pass among them).
#[test]
fn waits_in_unloaded_libraries_are_all_kept() {
    let prog = build("dlopen_loop");
    let plugin = build("libplugin.so");
    let r = run(
        "contention-dlopen",
        &prog,
        &[plugin.to_str().unwrap(), "0", "30", "contend"],
        &[("RPROF_BLOCK_RATE", "1"), ("RPROF_MUTEX_FRACTION", "1")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    let waited = r.printed("wait_ns");
    // The holder keeps the lock 20 ms from when it says so: the program, preempted on a
    // busy machine, still finds it held. Each wait is most of those 20 ms.
    assert!(waited >= 30 * 10 * MS, "the program waited {waited} ns");
    let block = profile(&r, "block");
    let (locs, funcs) = (block.location_by_id(), block.function_by_id());
    let at_lock: i64 = block
        .sample
        .iter()
        .filter(|s| {
            let frames = block.frames(s, &locs, &funcs);
            frames[0].function == "pthread_mutex_lock"
                && frames
                    .get(1)
                    .is_some_and(|f| f.function == "plugin_contend")
        })
        .map(|s| s.value[0])
        .sum();
    assert_eq!(at_lock, 30, "{:?}", function_names(&block));
    let b = summarize(&block, "delay");
    assert!(
        b.cum("plugin_contend") >= waited * 9 / 10,
        "{} of {waited} ns",
        b.cum("plugin_contend")
    );
    let mutex = profile(&r, "mutex");
    assert_eq!(summarize(&mutex, "contentions").cum("plugin_holder"), 30);
    assert_within(
        "mutex at plugin_holder",
        summarize(&mutex, "delay").cum("plugin_holder"),
        waited,
        0.10,
    );
}

#[test]
fn rwlock_readers_wait_on_writer() {
    let r = record_all("rwlock");
    let b = summarize(&profile(&r, "block"), "delay");
    let waited = r.printed("wait_ns");
    assert!(waited >= 2 * 10 * 45 * MS, "the readers waited {waited} ns");
    assert_within("block at reader_site", b.cum("reader_site"), waited, 0.10);
    let m = summarize(&profile(&r, "mutex"), "delay");
    assert_within(
        "mutex at writer_section",
        m.cum("writer_section"),
        waited,
        0.10,
    );
}

#[test]
fn condition_variable_semaphore_and_join_waits() {
    let r = record_all("cond");
    let block = profile(&r, "block");
    let b = summarize(&block, "delay");
    let waited = r.printed("wait_ns");
    assert!(waited >= 5 * 95 * MS, "the waiter waited {waited} ns");
    assert_within("cond wait", b.cum("cond_waiter_site"), waited, 0.10);
    assert_leaf(&block, "cond_waiter_site", "pthread_cond_wait");

    let r = record_all("sem_join");
    let block = profile(&r, "block");
    let b = summarize(&block, "delay");
    assert_within(
        "sem_wait",
        b.cum("sem_waiter_site"),
        r.printed("sem_ns"),
        0.10,
    );
    assert_within(
        "pthread_join",
        b.cum("join_site"),
        r.printed("join_ns"),
        0.10,
    );
    assert_leaf(&block, "sem_waiter_site", "sem_wait");
    assert_leaf(&block, "join_site", "pthread_join");
}

#[test]
fn no_contention_means_empty_profiles() {
    let r = record_all("none");
    assert!(profile(&r, "block").sample.is_empty());
    assert!(profile(&r, "mutex").sample.is_empty());
}

/// A list the program printed on stderr as `name=v1,v2,...`.
fn printed_list(r: &Run, name: &str) -> Vec<f64> {
    let line = r
        .stderr()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {name}= in stderr: {}", r.stderr()));
    line.split(',').map(|v| v.parse().unwrap()).collect()
}

/// Asserts `got` within 5 standard deviations `sd` of `truth`.
fn assert_within_sd(what: &str, got: f64, truth: f64, sd: f64) {
    assert!(
        (got - truth).abs() <= 5.0 * sd,
        "{what}: {got:.0} vs {truth:.0} ± {:.0} (5 sd; {:.1}% of the truth)",
        5.0 * sd,
        500.0 * sd / truth
    );
}

/// 1000 waits of about 1.5 ms each (the program prints every one) at RPROF_BLOCK_RATE =
/// 3 ms and RPROF_MUTEX_FRACTION = 2.
///
/// Block: a wait d < r is kept with probability d/r and then counted as r/d waits of r ns,
/// so its contribution X has E[X] = d and Var[X] = r² · (d/r)(1 − d/r) = d(r − d); a wait
/// d ≥ r is kept as it is (variance 0). The total over the waits is unbiased for Σd with
/// variance Σ d(r − d) over the short ones, about 1000 · 1.5 ms · 1.5 ms: sd ≈ 47 ms of
/// 1.5 s (3 %), bound 5 sd. The rate is twice the wait because that maximises how far a
/// biased estimate lands outside the bound: keeping short waits without the r/d scaling
/// gives Σd²/r ≈ half the truth (10 sd off); dropping them gives 0. The contentions are
/// unbiased for the number of waits, with variance Σ (r/d − 1) over the short ones.
///
/// Mutex: each unlock that ends a wait is charged with the time c from the waiter's start
/// to the unlock (the program prints every c), kept with probability 1/f and scaled by f:
/// E = Σc, Var = Σ c²(f − 1), sd ≈ 47 ms (3 %). An estimate not scaled by f is half.
#[test]
fn sampled_block_and_mutex_profiles_are_unbiased() {
    let prog = build("contention");
    let (rate, fraction) = (3_000_000.0, 2.0);
    let r = run(
        "contention-sampled",
        &prog,
        &["sampled", "1000", "1500"],
        &[
            ("RPROF_BLOCK_RATE", "3000000"),
            ("RPROF_MUTEX_FRACTION", "2"),
        ],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    let waits = printed_list(&r, "waits");
    let charged = printed_list(&r, "charged");
    assert_eq!(waits.len(), 1000);
    let short = || waits.iter().filter(|&&d| d > 0.0 && d < rate);
    assert!(
        short().count() > 500,
        "most waits are shorter than the rate: {:?}",
        &waits[..10]
    );

    let block = profile(&r, "block");
    let truth: f64 = waits.iter().sum();
    let sd = short().map(|d| d * (rate - d)).sum::<f64>().sqrt();
    let got = summarize(&block, "delay").cum("waiter_site") as f64;
    assert_within_sd("sampled block delay", got, truth, sd);
    let count_sd = short().map(|d| rate / d - 1.0).sum::<f64>().sqrt();
    let counted = summarize(&block, "contentions").cum("waiter_site") as f64;
    let waited = waits.iter().filter(|&&d| d > 0.0).count() as f64;
    assert_within_sd("sampled block contentions", counted, waited, count_sd);

    let mutex = profile(&r, "mutex");
    let truth: f64 = charged.iter().sum();
    let sd = (charged.iter().map(|c| c * c).sum::<f64>() * (fraction - 1.0)).sqrt();
    let got = summarize(&mutex, "delay").cum("sampled_holder_section") as f64;
    assert_within_sd("sampled mutex delay", got, truth, sd);
}

#[test]
fn long_waits_are_kept_as_they_are_at_any_rate() {
    // The 200 ms semaphore wait and the 500 ms join are above a 100 ms rate: always kept,
    // each once, with its own delay.
    let prog = build("contention");
    let r = run(
        "contention-sampled-sem",
        &prog,
        &["sem_join"],
        &[("RPROF_BLOCK_RATE", "100000000")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    let block = profile(&r, "block");
    let b = summarize(&block, "delay");
    assert_within(
        "long wait kept as is",
        b.cum("sem_waiter_site"),
        r.printed("sem_ns"),
        0.10,
    );
    assert_within(
        "join kept as is",
        b.cum("join_site"),
        r.printed("join_ns"),
        0.10,
    );
    let c = summarize(&block, "contentions");
    assert_eq!((c.cum("sem_waiter_site"), c.cum("join_site")), (1, 1));
}

/// Every timed and clock variant, a writer blocked by a reader, a contended spin lock and a
/// barrier: each 40 ms wait is recorded at its site, starting at the call itself.
#[test]
fn every_wait_variant_is_recorded_at_its_call() {
    let r = record_all("variants");
    let block = profile(&r, "block");
    let b = summarize(&block, "delay");
    let c = summarize(&block, "contentions");
    for call in [
        "pthread_mutex_timedlock",
        "pthread_mutex_clocklock",
        "pthread_rwlock_wrlock",
        "pthread_rwlock_timedrdlock",
        "pthread_rwlock_timedwrlock",
        "pthread_rwlock_clockrdlock",
        "pthread_rwlock_clockwrlock",
        "pthread_cond_timedwait",
        "pthread_cond_clockwait",
        "sem_timedwait",
        "sem_clockwait",
        "pthread_spin_lock",
        "pthread_barrier_wait",
    ] {
        let site = format!("site_{}", call.strip_prefix("pthread_").unwrap_or(call));
        let waited = r.printed(&format!("{call}_ns"));
        // The helper holds 40 ms from when it says so; the program, preempted on a busy
        // machine, may notice late and wait less: a wait of some length is all this needs.
        assert!(waited >= 10 * MS, "{call}: the program waited {waited} ns");
        assert_within(&format!("{call} at {site}"), b.cum(&site), waited, 0.10);
        assert_eq!(c.cum(&site), 1, "{call}: one wait");
        assert_leaf(&block, &site, call);
    }
}

#[test]
fn zero_rate_or_fraction_turns_that_profile_off() {
    let prog = build("contention");
    let r = run(
        "contention-block-off",
        &prog,
        &["mutex"],
        &[("RPROF_BLOCK_RATE", "0"), ("RPROF_MUTEX_FRACTION", "1")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(r.files_of("block").is_empty(), "{:?}", r.files());
    let m = summarize(&profile(&r, "mutex"), "delay");
    assert_within(
        "mutex without block",
        m.cum("holder_section"),
        r.printed("wait_ns"),
        0.10,
    );

    let r = run(
        "contention-mutex-off",
        &prog,
        &["mutex"],
        &[("RPROF_BLOCK_RATE", "1"), ("RPROF_MUTEX_FRACTION", "0")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(r.files_of("mutex").is_empty(), "{:?}", r.files());
    let b = summarize(&profile(&r, "block"), "delay");
    assert_within(
        "block without mutex",
        b.cum("waiter_site"),
        r.printed("wait_ns"),
        0.10,
    );
}
