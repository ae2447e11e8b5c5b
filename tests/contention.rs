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

/// A figure the program printed on stderr as `name=N`.
fn printed(r: &Run, name: &str) -> i64 {
    r.stderr()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}="))?.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in stderr: {}", r.stderr()))
}

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
    let waited = printed(&r, "wait_ns");
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
    // Every sample names its lock; there is one lock here.
    let locks: std::collections::HashSet<_> = mutex
        .sample
        .iter()
        .filter_map(|s| mutex.label_str(s, "lock"))
        .collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
    if let Some(top) = go_pprof_top(&r.files_of("mutex")[0], &["-sample_index=delay"]) {
        assert!(
            top.contains("holder_section") && top.contains("pthread_mutex_unlock"),
            "{top}"
        );
    }
}

#[test]
fn rwlock_readers_wait_on_writer() {
    let r = record_all("rwlock");
    let b = summarize(&profile(&r, "block"), "delay");
    let waited = printed(&r, "wait_ns");
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
    let waited = printed(&r, "wait_ns");
    assert!(waited >= 5 * 95 * MS, "the waiter waited {waited} ns");
    assert_within("cond wait", b.cum("cond_waiter_site"), waited, 0.10);
    assert_leaf(&block, "cond_waiter_site", "pthread_cond_wait");

    let r = record_all("sem_join");
    let block = profile(&r, "block");
    let b = summarize(&block, "delay");
    assert_within(
        "sem_wait",
        b.cum("sem_waiter_site"),
        printed(&r, "sem_ns"),
        0.10,
    );
    assert_within(
        "pthread_join",
        b.cum("join_site"),
        printed(&r, "join_ns"),
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

/// At RPROF_BLOCK_RATE = 100 ms each ~50 ms wait d is kept with probability d/100 ms and
/// then counts as 100 ms/d contentions of 100 ms: the total of the 20 waits W ≈ 1 s is
/// unbiased, with standard deviation 100 ms · sqrt(20 · 1/2 · 1/2) ≈ 224 ms (bound: 4.5 of
/// those). Exactly, each kept wait contributes its own length per contention, so the
/// delay per contention is the mean kept wait (checked to 10 %). Waits at least the rate
/// (the 200 ms semaphore wait) are always kept as they are.
#[test]
fn sampled_block_profile_is_unbiased() {
    let prog = build("contention");
    let r = run(
        "contention-sampled",
        &prog,
        &["mutex"],
        &[
            ("RPROF_BLOCK_RATE", "100000000"),
            ("RPROF_MUTEX_FRACTION", "1"),
        ],
    );
    assert!(r.output.status.success());
    let b = summarize(&profile(&r, "block"), "delay");
    let got = b.cum("waiter_site");
    let waited = printed(&r, "wait_ns");
    assert!((got - waited).abs() <= 1008 * MS, "{got} vs {waited}");
    let counts = summarize(&profile(&r, "block"), "contentions").cum("waiter_site");
    if counts > 0 {
        let per_wait = got / counts;
        assert_within("delay per contention", per_wait, waited / 20, 0.10);
    }

    let r = run(
        "contention-sampled-sem",
        &prog,
        &["sem_join"],
        &[("RPROF_BLOCK_RATE", "100000000")],
    );
    let b = summarize(&profile(&r, "block"), "delay");
    assert_within(
        "long wait kept as is",
        b.cum("sem_waiter_site"),
        printed(&r, "sem_ns"),
        0.10,
    );
}
