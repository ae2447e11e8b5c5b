//! The wall-clock profile: every thread's time, running or waiting, against programs that
//! know how they spend it.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use common::*;
use rprof_profile::Profile;

/// Wall time by (thread, state) and by (thread, function on the stack), in ns.
struct Wall {
    by_state: HashMap<(String, String), i64>,
    by_frame: HashMap<(String, String), i64>,
    /// By (thread, state, function): for "the waits in read have wait_in_read below them".
    by_state_frame: HashMap<(String, String, String), i64>,
    by_thread: HashMap<String, i64>,
}

fn wall_of(p: &Profile) -> Wall {
    let idx = p.sample_type_index("wall").expect("a wall sample type");
    let (locs, funcs) = (p.location_by_id(), p.function_by_id());
    let mut w = Wall {
        by_state: HashMap::new(),
        by_frame: HashMap::new(),
        by_state_frame: HashMap::new(),
        by_thread: HashMap::new(),
    };
    for s in &p.sample {
        let v = s.value[idx];
        let thread = p.label_str(s, "thread").unwrap_or("").to_string();
        let state = p.label_str(s, "state").expect("a state label").to_string();
        assert!(p.label_num(s, "thread_id").is_some(), "a thread_id label");
        *w.by_thread.entry(thread.clone()).or_default() += v;
        *w.by_state
            .entry((thread.clone(), state.clone()))
            .or_default() += v;
        let mut seen = std::collections::HashSet::new();
        for f in p.frames(s, &locs, &funcs) {
            if seen.insert(f.function.to_string()) {
                *w.by_frame
                    .entry((thread.clone(), f.function.to_string()))
                    .or_default() += v;
                *w.by_state_frame
                    .entry((thread.clone(), state.clone(), f.function.to_string()))
                    .or_default() += v;
            }
        }
    }
    w
}

impl Wall {
    fn state(&self, thread: &str, state: &str) -> i64 {
        self.by_state
            .get(&(thread.into(), state.into()))
            .copied()
            .unwrap_or(0)
    }
    fn thread(&self, thread: &str) -> i64 {
        self.by_thread.get(thread).copied().unwrap_or(0)
    }
    fn under(&self, thread: &str, state: &str, functions: &[&str]) -> i64 {
        functions
            .iter()
            .map(|f| {
                self.by_state_frame
                    .get(&(thread.into(), state.into(), (*f).into()))
                    .copied()
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(0)
    }
    fn states_of(&self, thread: &str) -> Vec<(&str, i64)> {
        self.by_state
            .iter()
            .filter(|((t, _), _)| t == thread)
            .map(|((_, s), v)| (s.as_str(), *v))
            .collect()
    }
}

/// A thread that computes 1/3 of its time and sleeps 2/3, one blocked in `read` and one in
/// a raw FUTEX_WAIT: the split within sampling error, each wait with its callers under it,
/// and no EINTR; built without frame pointers (Debian's default) and with them.
#[test]
fn wall_time_splits_as_the_threads_spend_it() {
    for (variant, flags) in [
        ("wall_split", &[][..]),
        (
            "wall_split_fp",
            &["-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer"][..],
        ),
    ] {
        let prog = build_variant("wall_split", variant, flags);
        let r = run(
            variant,
            &prog,
            &["3"],
            &[("RPROF_PROFILES", "cpu,wall"), ("RPROF_WALL_HZ", "100")],
        );
        assert!(r.output.status.success(), "{}", r.stderr());
        assert_eq!(r.printed("eintr"), 0, "{variant}: a wait was interrupted");
        let files = r.files_of("wall");
        assert_eq!(files.len(), 1, "{variant}: {:?}", r.files());
        let p = load(&files[0]);
        assert_eq!(p.period, 10_000_000);
        let w = wall_of(&p);
        // Each thread lived about 3 s: 300 ticks of 10 ms.
        for t in ["split", "reader", "futexer", "switcher"] {
            assert_within(
                &format!("{variant}: {t}'s wall time"),
                w.thread(t),
                3_000_000_000,
                0.15,
            );
        }
        let split = w.thread("split");
        let n = (split / 10_000_000) as f64;
        let running = w.state("split", "running");
        assert_share(
            &format!("{variant}: split running"),
            running,
            split,
            1.0 / 3.0,
            n,
        );
        let sleeping = w.state("split", "clock_nanosleep") + w.state("split", "nanosleep");
        assert_share(
            &format!("{variant}: split sleeping"),
            sleeping,
            split,
            2.0 / 3.0,
            n,
        );
        // Whole stacks: each phase under its function and the thread's start routine.
        assert!(
            w.under("split", "running", &["compute_phase", "split_main"]) as f64
                >= 0.8 * running as f64,
            "{variant}: {:?}",
            w.states_of("split")
        );
        let slept = w.under("split", "clock_nanosleep", &["sleep_phase", "split_main"])
            + w.under("split", "nanosleep", &["sleep_phase", "split_main"]);
        assert!(
            slept as f64 >= 0.9 * sleeping as f64,
            "{variant}: {slept} of {sleeping}"
        );
        for (thread, state, f, caller) in [
            ("reader", "read", "wait_in_read", "reader_main"),
            ("futexer", "futex", "wait_in_futex", "futexer_main"),
        ] {
            let all = w.thread(thread);
            let there = w.under(thread, state, &[f, caller]);
            assert!(
                there as f64 >= 0.9 * all as f64,
                "{variant}: {thread} {there} of {all} ns in {state} under {f} and {caller}: {:?}",
                w.states_of(thread)
            );
        }
        // From one wait to another without running between: each half under its own.
        let switcher = w.thread("switcher");
        let n = (switcher / 10_000_000) as f64;
        // (nap's call of sleep_phase is a tail call: nap's own frame is gone.)
        let napped = w.under(
            "switcher",
            "clock_nanosleep",
            &["sleep_phase", "switcher_main"],
        ) + w.under("switcher", "nanosleep", &["sleep_phase", "switcher_main"]);
        let polled = w.under("switcher", "poll", &["poll_a_while", "switcher_main"])
            + w.under("switcher", "ppoll", &["poll_a_while", "switcher_main"]);
        assert_share(
            &format!("{variant}: switcher napping"),
            napped,
            switcher,
            0.5,
            n,
        );
        assert_share(
            &format!("{variant}: switcher polling"),
            polled,
            switcher,
            0.5,
            n,
        );
        // rprof's own command reads it.
        let top = std::process::Command::new(release_dir().join("rprof"))
            .args(["top", "-n", "40"])
            .arg(&files[0])
            .output()
            .unwrap();
        assert!(top.status.success());
        let top = String::from_utf8_lossy(&top.stdout);
        assert!(
            top.contains("wait_in_futex") && top.contains("Type: wall"),
            "{top}"
        );
        if let Some(top) = go_pprof_top(&files[0], &["-tagfocus=state=futex"]) {
            assert!(top.contains("wait_in_futex"), "{top}");
            assert!(!top.contains("wait_in_read"), "{top}");
        }
    }
}

/// Rust threads contending on a `std::sync::Mutex` wait in std's own futex lock, not in
/// pthread: their waits show under the lock's frames and the function that took it.
#[test]
fn rust_mutex_waits_show_under_the_lock_frames() {
    let prog = build("rust_mutex");
    let r = run(
        "wall-rust-mutex",
        &prog,
        &["3"],
        &[("RPROF_PROFILES", "cpu,wall"), ("RPROF_WALL_HZ", "100")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    let waited = r.printed("waited_ms") * 1_000_000;
    assert!(
        waited > 3_000_000_000,
        "the workers hardly contended: {waited} ns"
    );
    let p = load(&r.files_of("wall")[0]);
    let w = wall_of(&p);
    let (mut futex, mut under_lock) = (0, 0);
    for i in 0..4 {
        let t = format!("worker{i}");
        futex += w.state(&t, "futex");
        // Frames of std's lock (`…::futex::Mutex::lock_contended`) between the wait and the
        // program's function.
        under_lock += w
            .by_state_frame
            .iter()
            .filter(|((th, st, f), _)| *th == t && st == "futex" && f.contains("lock_contended"))
            .map(|(_, v)| *v)
            .sum::<i64>()
            .min(w.under(&t, "futex", &["rust_mutex::hold_a_while"]));
    }
    // Three of four workers wait while one holds the lock (and sleeps in it).
    assert!(
        futex > 3_000_000_000,
        "{futex} ns in futex: {:?}",
        w.by_state
    );
    assert!(
        under_lock as f64 >= 0.8 * futex as f64,
        "{under_lock} of {futex} ns under lock_contended and hold_a_while"
    );
}

/// Off unless asked for: no file, and no thread of rprof's started for it.
/// Threads that go from one short wait to the next, sampled 1000 times a second: no wait
/// is cut short. (Signalling the threads seen running reached them in their next wait:
/// about 150 EINTRs in 2 s.)
#[test]
fn wall_sampling_cuts_no_wait_short() {
    let r = run(
        "wall-eintr",
        &build("wait_switcher"),
        &["2", "4"],
        &[("RPROF_PROFILES", "cpu,wall"), ("RPROF_WALL_HZ", "1000")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.printed("eintr"), 0, "waits were interrupted");
    assert_eq!(r.files_of("wall").len(), 1, "{:?}", r.files());
}

/// A thread that names itself after the sampler first saw it: its name is read again
/// within a few ticks, not after 64 (0.64 s at 100 Hz, which the old samples kept).
#[test]
fn a_thread_named_late_is_named_within_a_few_ticks() {
    let r = run(
        "wall-late-name",
        &build("late_name"),
        &["1.5"],
        &[("RPROF_PROFILES", "cpu,wall"), ("RPROF_WALL_HZ", "100")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    let w = wall_of(&load(&r.files_of("wall")[0]));
    // It lives about 1.55 s and names itself at 50 ms; up to 8 ticks more under the old
    // name, and a loaded machine's slower ticks, leave it at least 1.3 s.
    let named = w.thread("late");
    assert!(
        named >= 1_300_000_000,
        "{named} ns under its name: {:?}",
        w.by_thread
    );
}

#[test]
fn wall_is_off_by_default() {
    let prog = build("wall_split");
    let r = run("wall-off", &prog, &["1"], &[]);
    assert!(r.output.status.success());
    assert!(r.files_of("wall").is_empty(), "{:?}", r.files());
    assert!(!r.files_of("cpu").is_empty());
}

/// `/debug/pprof/wall?seconds=3` answers after 3 seconds with those 3 seconds, fgprof's
/// path answers too, the index lists the profile, and `go tool pprof` reads it.
#[test]
fn wall_over_http() {
    let prog = build("wall_split");
    let dir = out_dir("wall-http");
    let mut child = spawn_piped(
        &prog,
        &["20"],
        &[
            ("RPROF_PROFILES", "cpu,wall"),
            ("RPROF_WALL_HZ", "50"),
            ("RPROF_HTTP", "127.0.0.1:0"),
        ],
        &dir,
    );
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = served_address(&line);
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
    });
    let start = Instant::now();
    let (status, _, body) = http_request(&addr, "GET", "/debug/pprof/wall?seconds=3", b"");
    let took = start.elapsed();
    assert_eq!(status, 200);
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_millis(4500),
        "{took:?}"
    );
    let p = rprof_profile::decode(&body).unwrap();
    rprof_profile::check_valid(&p).unwrap();
    assert!(
        (p.duration_nanos - 3_000_000_000).abs() < 100_000_000,
        "{}",
        p.duration_nanos
    );
    let w = wall_of(&p);
    assert_within(
        "reader's wall time in the window",
        w.thread("reader"),
        3_000_000_000,
        0.15,
    );
    let file = dir.join("window.pb.gz");
    std::fs::write(&file, &body).unwrap();
    if let Some(top) = go_pprof_top(&file, &[]) {
        assert!(top.contains("wait_in_read"), "{top}");
    }
    let (status, _, body) = http_request(&addr, "GET", "/debug/fgprof?seconds=1", b"");
    assert_eq!(status, 200);
    let p = rprof_profile::decode(&body).unwrap();
    assert!(wall_of(&p).thread("futexer") > 0);
    let (_, _, index) = http_request(&addr, "GET", "/debug/pprof/", b"");
    let index = String::from_utf8_lossy(&index);
    assert!(index.contains("<a href='wall'>wall</a>"), "{index}");
    kill(pid_of(&child), "TERM");
    let _ = wait_at_most(&mut child, Duration::from_secs(20));
}
