//! Block and mutex profiles of c_tests/contention.c, whose waits are known.
//!
//! With RPROF_BLOCK_RATE=1 and RPROF_MUTEX_FRACTION=1 every wait is recorded, so delays
//! must match the program's sleeps within 10 %. At a sampling rate the estimate is
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
    assert_within(
        "block at waiter_site",
        b.cum("waiter_site"),
        20 * 50 * MS,
        0.10,
    );
    assert_eq!(summarize(&block, "contentions").cum("waiter_site"), 20);
    assert_leaf(&block, "waiter_site", "pthread_mutex_lock");
    let mutex = profile(&r, "mutex");
    let m = summarize(&mutex, "delay");
    assert_within(
        "mutex at holder_section",
        m.cum("holder_section"),
        20 * 50 * MS,
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
    assert_within(
        "block at reader_site",
        b.cum("reader_site"),
        2 * 10 * 50 * MS,
        0.10,
    );
    let m = summarize(&profile(&r, "mutex"), "delay");
    assert_within(
        "mutex at writer_section",
        m.cum("writer_section"),
        2 * 10 * 50 * MS,
        0.10,
    );
}

#[test]
fn condition_variable_semaphore_and_join_waits() {
    let r = record_all("cond");
    let block = profile(&r, "block");
    let b = summarize(&block, "delay");
    assert_within("cond wait", b.cum("cond_waiter_site"), 5 * 100 * MS, 0.10);
    assert_leaf(&block, "cond_waiter_site", "pthread_cond_wait");

    let r = record_all("sem_join");
    let block = profile(&r, "block");
    let b = summarize(&block, "delay");
    assert_within("sem_wait", b.cum("sem_waiter_site"), 200 * MS, 0.10);
    assert_within("pthread_join", b.cum("join_site"), 500 * MS, 0.10);
    assert_leaf(&block, "sem_waiter_site", "sem_wait");
    assert_leaf(&block, "join_site", "pthread_join");
}

#[test]
fn no_contention_means_empty_profiles() {
    let r = record_all("none");
    assert!(profile(&r, "block").sample.is_empty());
    assert!(profile(&r, "mutex").sample.is_empty());
}

/// At RPROF_BLOCK_RATE = 100 ms the 50 ms waits are each kept with probability 1/2 and
/// then count as 100 ms: the total of 20 waits is 1 s in expectation, with standard
/// deviation 100 ms · sqrt(20 · 1/2 · 1/2) ≈ 224 ms; the bound is 4.5 of those. Waits at
/// least the rate (the 200 ms semaphore wait) are always kept as they are.
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
    assert!((got - 1000 * MS).abs() <= 1008 * MS, "{got}");
    let counts = summarize(&profile(&r, "block"), "contentions");
    // Each kept 50 ms wait counts as 2 contentions.
    assert_eq!(counts.cum("waiter_site") % 2, 0);

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
        200 * MS,
        0.10,
    );
}
