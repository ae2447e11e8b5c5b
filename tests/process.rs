//! Processes and signals: fork, exec, the dump signal, death by SIGINT/SIGTERM, and the
//! program's own view of its signal dispositions.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn forked_child_writes_its_own_profile() {
    let prog = build("fork_child");
    let r = run("fork", &prog, &[], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.output.stdout, run_plain(&prog, &[]).stdout);
    let child = r.printed("child") as u32;
    let files = r.files_of("cpu");
    assert_eq!(files.len(), 2, "{files:?}");
    let child_p = summarize(&r.final_profile(child, "cpu"), "cpu");
    let parent_file = files
        .iter()
        .find(|f| !f.to_string_lossy().contains(&format!(".{child}.")))
        .unwrap();
    let parent_p = summarize(&load(parent_file), "cpu");
    // The child profile covers the child only: child_burn, none of parent_burn.
    assert!(child_p.cum("child_burn") as f64 >= 0.9 * child_p.total as f64);
    assert_eq!(child_p.cum("parent_burn"), 0);
    assert!(parent_p.cum("parent_burn") > 0);
    assert_eq!(parent_p.cum("child_burn"), 0);
    // The parent's background thread kept running across the fork and was profiled.
    assert!(parent_p.cum("background") > 0);
}

#[test]
fn exec_started_program_is_profiled_into_its_own_file() {
    let prog = build("cpu_split");
    let script = format!("{} 200; true", prog.display());
    let r = run(
        "exec",
        std::path::Path::new("/bin/sh"),
        &["-c", &script],
        &[],
    );
    assert!(r.output.status.success());
    let with_split = r
        .files_of("cpu")
        .iter()
        .filter(|f| summarize(&load(f), "cpu").cum("burn_three") > 0)
        .count();
    assert_eq!(with_split, 1, "{:?}", r.files());
}

/// Starts long_running, waits for its "ready" line, and returns the child and its stdout.
fn start_long_running(dir: &Path, seconds: &str) -> (Child, BufReader<ChildStdout>) {
    start_long_running_with(dir, seconds, &[])
}

fn start_long_running_with(
    dir: &Path,
    seconds: &str,
    env: &[(&str, &str)],
) -> (Child, BufReader<ChildStdout>) {
    let prog = build("long_running");
    let mut child = spawn(&prog, &[seconds], env, dir);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, out)
}

fn rest_of(mut out: BufReader<ChildStdout>) -> String {
    let mut s = String::new();
    std::io::Read::read_to_string(&mut out, &mut s).unwrap();
    s
}

#[test]
fn dump_signal_writes_numbered_snapshots_that_add_up() {
    let dir = out_dir("snapshots");
    let (mut child, out) = start_long_running(&dir, "2.5");
    let pid = child.id();
    for n in 1..=2 {
        std::thread::sleep(Duration::from_millis(700));
        kill(pid, "USR2");
        // The snapshot appears while the program keeps running.
        let path = dir.join(format!("rprof.{pid}.cpu.{n}.pb.gz"));
        assert!(appears(&path), "snapshot {n} missing");
    }
    let stdout = rest_of(out);
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        stdout.ends_with("finished\n") && !stdout.contains("rprof"),
        "{stdout}"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let cpu_ns: i64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("cpu_ns=")?.parse().ok())
        .unwrap();
    // Profiled for all four kinds and dumped twice, the process kept its one thread.
    assert!(stderr.contains("threads=1\n"), "{stderr}");
    let files = files_of(&dir, "cpu");
    assert_eq!(files.len(), 3, "{files:?}");
    let mut total = 0;
    for f in &files {
        let s = summarize(&load(f), "cpu");
        assert!(s.cum("loop_burn") > 0, "{} has no loop_burn", f.display());
        total += s.total;
    }
    // Each file covers the time since the previous one: together, the whole run once.
    assert_within("snapshots + final vs getrusage", total, cpu_ns, 0.10);
}

fn dies_by(sig: &str, signo: i32) {
    let dir = out_dir(&format!("die-{sig}"));
    let (mut child, out) = start_long_running(&dir, "20");
    std::thread::sleep(Duration::from_millis(600));
    kill(child.id(), sig);
    let stdout = rest_of(out);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(signo), "{status:?}");
    assert!(!stdout.contains("finished") && !stdout.contains("rprof"));
    let p = load(&dir.join(format!("rprof.{}.cpu.pb.gz", child.id())));
    assert!(summarize(&p, "cpu").cum("loop_burn") > 0);
}

#[test]
fn sigterm_writes_profile_then_dies_by_sigterm() {
    dies_by("TERM", libc_sig::SIGTERM);
}

#[test]
fn sigint_writes_profile_then_dies_by_sigint() {
    dies_by("INT", libc_sig::SIGINT);
}

#[test]
fn sighup_writes_profile_then_dies_by_sighup() {
    dies_by("HUP", libc_sig::SIGHUP);
}

mod libc_sig {
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
}

#[test]
fn program_sees_its_own_dispositions_and_its_handlers_win() {
    let prog = build("signals_view");
    let dir = out_dir("signals-view");
    // Rate 1: its allocations make the files worth writing (it burns no CPU to speak of).
    let mut child = spawn(&prog, &[], &[("RPROF_HEAP_RATE", "1")], &dir);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if line == "waiting\n" {
            break;
        }
    }
    // Exactly what the program sees without rprof: every signal at its default, and its
    // own handler once it installs one.
    assert_eq!(
        seen,
        "INT=default\nTERM=default\nPROF=default\nUSR2=default\n\
         signal(USR2) returned default\nTERM now=handler\nwaiting\n"
    );
    kill(child.id(), "TERM");
    let rest = rest_of(out);
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "the program's own SIGTERM handler ran"
    );
    assert_eq!(rest, "caught TERM\n");
    assert_eq!(
        files_of(&dir, "cpu").len(),
        1,
        "profiles written at its normal exit"
    );
}

#[test]
fn program_taking_sigprof_keeps_cpu_profiling_on_another_signal() {
    let prog = build("signals_view");
    let r = run("sigprof", &prog, &["prof"], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(r.stdout().contains("own SIGPROF handler ran"));
    // None of rprof's timer signals reached the program's handler: its timers moved.
    assert!(
        r.stdout()
            .contains("timer signals seen by the program: 0\n"),
        "{}",
        r.stdout()
    );
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    // The loop under the program's own timer (about 0.2 s of CPU) was sampled.
    let s = summarize(&load(&r.files_of("cpu")[0]), "cpu");
    assert!(s.cum("spin") > 0, "{:?}", s.functions());
}

/// Spawns `sh -c "trap '' INT; exec signals_view"` (as a shell's background job or nohup
/// starts a program) and reads its report up to "waiting".
fn start_signals_view_with_sigint_ignored(dir: &Path) -> (Child, BufReader<ChildStdout>, String) {
    let prog = build("signals_view");
    let mut child = command(
        Path::new("/bin/sh"),
        &["-c", &format!("trap '' INT; exec {}", prog.display())],
        &[],
        dir,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 || line == "waiting\n" {
            break;
        }
        seen.push_str(&line);
    }
    (child, out, seen)
}

#[test]
fn ignored_sigint_stays_ignored() {
    let dir = out_dir("ignored");
    let (mut child, out, seen) = start_signals_view_with_sigint_ignored(&dir);
    assert!(seen.starts_with("INT=ignore\n"), "{seen}");
    // SIGINT does nothing to it, as without rprof; its own SIGTERM handler then ends it.
    kill(child.id(), "INT");
    std::thread::sleep(Duration::from_millis(200));
    kill(child.id(), "TERM");
    let rest = rest_of(out);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{status:?}: it survived SIGINT");
    assert_eq!(rest, "caught TERM\n");
}

#[test]
fn last_thread_calling_pthread_exit_still_writes_the_profile() {
    let prog = build("pthread_exit_main");
    let r = run("pthread-exit", &prog, &[], &[]);
    assert!(r.output.status.success());
    assert_eq!(r.stdout(), "worker done\n");
    let files = r.files_of("cpu");
    assert_eq!(files.len(), 1, "{files:?}");
    let p = load(&files[0]);
    let s = summarize(&p, "cpu");
    assert!(s.cum("start_thread") > 0 && s.total > 0);
    // Symbolized although the main thread (and so /proc/self/maps) is gone.
    assert!(s.cum("worker_burn") as f64 >= 0.9 * s.total as f64);
    assert!(p.str(p.mapping[0].filename).ends_with("/pthread_exit_main"));
    if let Some(top) = go_pprof_top(&files[0], &[]) {
        assert!(top.contains("worker_burn"), "{top}");
    }
}

#[test]
fn program_taking_the_dump_signal_gets_it_and_one_warning() {
    let prog = build("signals_view");
    let r = run("usr2", &prog, &["usr2"], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(
        r.stdout().ends_with("own USR2 handler ran\n"),
        "{}",
        r.stdout()
    );
    let warnings = r.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("signal 12"), "{}", warnings[0]);
    // No snapshot was written: the program's handler got the signal.
    assert!(r
        .files_of("cpu")
        .iter()
        .all(|f| !f.to_string_lossy().contains(".cpu.1.")));
}

#[test]
fn legacy_signal_interfaces_see_and_keep_the_programs_view() {
    // sigset and sysv_signal report what the program would see without rprof (SIG_DFL, not
    // rprof's handlers), the program's handlers win, and each takeover warns once.
    let prog = build("signals_view");
    let r = run("legacy-signals", &prog, &["legacy"], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(
        r.stdout(),
        String::from_utf8_lossy(&run_plain(&prog, &["legacy"]).stdout)
    );
    assert!(r
        .stdout()
        .contains("sigset(USR2, SIG_HOLD) returned default\nsigset(USR2, handler) returned hold\nown USR2 handler ran\nsysv_signal(PROF) returned default\nown SIGPROF handler ran\n"));
    // Only the dump signal's takeover is worth a word: the CPU timers just moved.
    let warnings = r.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("signal 12"), "{warnings:?}");
}

/// Waits up to 5 s for `path` to exist.
fn appears(path: &Path) -> bool {
    for _ in 0..250 {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The dump signal given by RPROF_SIGNAL writes a snapshot; the default one (SIGUSR2) is
/// then the program's again, and its default action ends the program.
fn snapshot_signal_is(value: &str, kill_arg: &str) {
    let dir = out_dir(&format!("signal-{value}"));
    let (mut child, out) = start_long_running_with(&dir, "20", &[("RPROF_SIGNAL", value)]);
    let pid = child.id();
    // At once: a request that comes before the collector thread first runs is served too.
    kill(pid, kill_arg);
    if !appears(&dir.join(format!("rprof.{pid}.cpu.1.pb.gz"))) {
        child.kill().unwrap();
        let mut e = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut e).unwrap();
        panic!("RPROF_SIGNAL={value}: no snapshot after kill -{kill_arg}: {e}");
    }
    kill(pid, "USR2");
    rest_of(out);
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(12),
        "{status:?}: SIGUSR2's default action"
    );
}

#[test]
fn rprof_signal_chooses_the_snapshot_signal() {
    snapshot_signal_is("USR1", "USR1");
    snapshot_signal_is("SIGUSR1", "USR1");
    snapshot_signal_is("10", "USR1");
    // glibc's SIGRTMIN is 34.
    snapshot_signal_is("RTMIN+2", "36");
}

#[test]
fn rprof_signal_none_leaves_every_signal_to_the_program() {
    let dir = out_dir("signal-none");
    let (mut child, out) = start_long_running_with(&dir, "20", &[("RPROF_SIGNAL", "none")]);
    std::thread::sleep(Duration::from_millis(200));
    kill(child.id(), "USR2");
    rest_of(out);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(12), "{status:?}");
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
}

#[test]
fn rprof_log_levels() {
    let prog = build("cpu_split");
    let lines = |level: &str| {
        let r = run(
            &format!("log-{level}"),
            &prog,
            &["40"],
            &[("RPROF_LOG", level), ("RPROF_CPU_HZ", "fast")],
        );
        assert!(r.output.status.success());
        assert_eq!(r.output.stdout, run_plain(&prog, &["40"]).stdout);
        // Every line rprof writes is an rprof: line; the program wrote only cpu_ns=.
        let other: Vec<String> = r
            .stderr()
            .lines()
            .filter(|l| !l.starts_with("rprof:") && !l.starts_with("cpu_ns="))
            .map(String::from)
            .collect();
        assert!(other.is_empty(), "{other:?}");
        r.warnings()
    };
    let bad = |l: &String| l.contains("RPROF_CPU_HZ") && l.contains("fast");
    let profiling = |l: &String| l.starts_with("rprof: profiling pid ");
    assert!(lines("off").is_empty());
    let warn = lines("warn");
    assert_eq!(warn.len(), 1, "{warn:?}");
    assert!(bad(&warn[0]));
    let info = lines("info");
    assert!(
        info.iter().any(bad) && info.iter().any(profiling),
        "{info:?}"
    );
    let debug = lines("debug");
    assert!(
        debug.iter().any(bad) && debug.iter().any(profiling) && debug.len() > info.len(),
        "debug: {debug:?}\ninfo: {info:?}"
    );
}

#[test]
fn rprof_profiles_selects_the_files() {
    let prog = build("phases");
    for (list, kinds) in [
        ("cpu", vec!["cpu"]),
        // The heap's peak comes with the heap.
        ("heap,mutex", vec!["heap-peak", "heap", "mutex"]),
        ("block", vec!["block"]),
        (
            "cpu,heap,block,mutex",
            vec!["block", "cpu", "heap-peak", "heap", "mutex"],
        ),
    ] {
        let dir = out_dir("profiles");
        let out = command(&prog, &[], &[("RPROF_PROFILES", list)], &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b"\n\n")?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success());
        let written: Vec<String> = files_in(&dir)
            .iter()
            .map(|f| {
                f.to_string_lossy()
                    .split('.')
                    .nth_back(2)
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(written, kinds, "RPROF_PROFILES={list}");
    }
}

/// A summary of one kind's file: the site function's value of sample type `index`.
fn site_value(path: &Path, index: &str, site: &str) -> i64 {
    summarize(&load(path), index).cum(site)
}

#[test]
fn dump_signal_writes_every_kind_heap_block_mutex_cumulative() {
    use std::io::Write;
    let prog = build("phases");
    let dir = out_dir("phases");
    let mut child = spawn_piped(
        &prog,
        &[],
        &[
            ("RPROF_HEAP_RATE", "1"),
            ("RPROF_BLOCK_RATE", "1"),
            ("RPROF_MUTEX_FRACTION", "1"),
        ],
        &dir,
    );
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for n in 1..=2 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, format!("phase {n}\n"));
        kill(pid, "USR2");
        for kind in ["cpu", "heap", "block", "mutex"] {
            let path = dir.join(format!("rprof.{pid}.{kind}.{n}.pb.gz"));
            assert!(appears(&path), "{} missing", path.display());
        }
        stdin.write_all(b"\n").unwrap();
    }
    assert_eq!(rest_of(out), "done\n");
    assert!(child.wait().unwrap().success());
    let file = |kind: &str, n: Option<u32>| match n {
        Some(n) => dir.join(format!("rprof.{pid}.{kind}.{n}.pb.gz")),
        None => dir.join(format!("rprof.{pid}.{kind}.pb.gz")),
    };
    const MIB: i64 = 1 << 20;
    // Heap: cumulative allocations, in-use as of each dump.
    for (n, one_inuse, two_alloc) in [
        (Some(1), 10 * MIB, 0),
        (Some(2), 0, 20 * MIB),
        (None, 0, 20 * MIB),
    ] {
        let f = file("heap", n);
        assert_eq!(
            site_value(&f, "alloc_space", "phase_one_alloc"),
            10 * MIB,
            "{n:?}"
        );
        assert_eq!(
            site_value(&f, "inuse_space", "phase_one_alloc"),
            one_inuse,
            "{n:?}"
        );
        assert_eq!(
            site_value(&f, "alloc_space", "phase_two_alloc"),
            two_alloc,
            "{n:?}"
        );
        assert_eq!(
            site_value(&f, "inuse_space", "phase_two_alloc"),
            two_alloc,
            "{n:?}"
        );
    }
    // Block and mutex: cumulative, five waits a phase.
    for (kind, one, two) in [
        ("block", "phase_one_wait", "phase_two_wait"),
        ("mutex", "phase_one_hold", "phase_two_hold"),
    ] {
        for (n, twos) in [(Some(1), 0), (Some(2), 5), (None, 5)] {
            let f = file(kind, n);
            assert_eq!(site_value(&f, "contentions", one), 5, "{kind} {n:?}");
            assert_eq!(site_value(&f, "contentions", two), twos, "{kind} {n:?}");
            assert!(
                site_value(&f, "delay", one) >= 5 * 15_000_000,
                "{kind} {n:?}"
            );
        }
    }
    // CPU: each file the window since the previous one.
    let cpu = |n, f| site_value(&file("cpu", n), "cpu", f);
    assert!(cpu(Some(1), "phase_one_burn") > 0 && cpu(Some(1), "phase_two_burn") == 0);
    assert!(cpu(Some(2), "phase_one_burn") == 0 && cpu(Some(2), "phase_two_burn") > 0);
    assert!(cpu(None, "phase_one_burn") == 0 && cpu(None, "phase_two_burn") == 0);
}

/// The dump signal, sent again and again to a single-threaded program busy in jemalloc
/// (which takes its locks even with one thread): each snapshot is written in the signal
/// handler, on the thread it interrupted, so it must not read the allocator's own figures
/// (`mallctl` waits for the lock the interrupted malloc may hold). The program keeps
/// running through every signal and dies of the SIGTERM that follows.
#[test]
fn snapshots_in_the_handler_never_wait_for_the_allocator() {
    let Some(preload) = jemalloc_preload() else {
        return;
    };
    let prog = build("malloc_loop");
    let dir = out_dir("usr2-in-jemalloc");
    let mut child = spawn(&prog, &[], &[("LD_PRELOAD", &preload)], &dir);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // Before the fix, 2 runs in 3 of 300 signals hung in a futex wait.
    for sent in 0..400 {
        kill(child.id(), "USR2");
        std::thread::sleep(Duration::from_millis(3));
        if let Some(st) = child.try_wait().unwrap() {
            panic!("ended after {sent} dump signals: {st:?}");
        }
    }
    kill(child.id(), "TERM");
    let status = wait_at_most(&mut child, Duration::from_secs(10))
        .expect("still running 10 s after SIGTERM: stuck in a snapshot");
    assert_eq!(status.signal(), Some(15), "{status:?}");
    let snapshots = files_of(&dir, "heap")
        .iter()
        .filter(|f| !f.to_string_lossy().ends_with(".heap.pb.gz"))
        .count();
    assert!(snapshots > 0, "{:?}", files_in(&dir));
}

/// A SIGTERM that lands while a thread is inside malloc (holding the allocator's lock):
/// the program dies of it within 1 s, with its four files, every time. rprof's dump needs
/// no lock the dying thread may hold (its memory is its own; the allocator's statistics
/// are left out of a dying process's heap file).
#[test]
fn sigterm_inside_malloc_writes_every_file_quickly() {
    let prog = build("malloc_loop");
    for round in 0..6 {
        let args: &[&str] = if round % 2 == 0 { &[] } else { &["threads"] };
        let dir = out_dir("term-in-malloc");
        let mut child = spawn(&prog, args, &[], &dir);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        std::thread::sleep(Duration::from_millis(100 + 37 * round));
        let sent = std::time::Instant::now();
        kill(child.id(), "TERM");
        let status = wait_at_most(&mut child, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("round {round} {args:?}: still running 5 s after SIGTERM"));
        let took = sent.elapsed();
        assert_eq!(status.signal(), Some(15), "{status:?}");
        assert!(
            took < Duration::from_secs(1),
            "round {round} {args:?}: {took:?}"
        );
        let pid = child.id();
        for kind in ["cpu", "heap", "block", "mutex"] {
            let f = dir.join(format!("rprof.{pid}.{kind}.pb.gz"));
            assert!(f.exists(), "round {round} {args:?}: no {kind} file");
            load(&f);
        }
    }
}

/// Runs `prog args` with and without the library: both must succeed (when the plain run
/// does), with the same output.
fn same_as_without(tag: &str, prog: &str, args: &[&str]) -> bool {
    let plain = std::process::Command::new(prog).args(args).output();
    let Ok(plain) = plain else {
        return have_tool(prog, false, "util-linux");
    };
    if !plain.status.success() {
        eprintln!("skipped: {prog} {args:?} fails here without rprof too");
        return false;
    }
    let r = run(tag, Path::new(prog), args, &[]);
    assert!(
        r.output.status.success(),
        "{prog} {args:?} under rprof: {:?} {}",
        r.output.status,
        r.stderr()
    );
    assert_eq!(r.output.stdout, plain.stdout);
    true
}

/// Tools that need a single-threaded process (glibc's setuid broadcast, a new user
/// namespace) work under the library, which starts no thread of its own in them.
#[test]
fn single_threaded_tools_keep_working() {
    same_as_without(
        "setpriv",
        "setpriv",
        &["--reuid=65534", "--regid=65534", "--clear-groups", "true"],
    );
    same_as_without("unshare", "unshare", &["-U", "true"]);
}

/// A process that records nothing (no CPU sample, no sampled allocation, no wait) leaves
/// no file, and says so at RPROF_LOG=info.
#[test]
fn a_process_that_records_nothing_writes_no_file() {
    let r = run(
        "nothing",
        Path::new("/bin/true"),
        &[],
        &[("RPROF_LOG", "info")],
    );
    assert!(r.output.status.success());
    assert!(r.files().is_empty(), "{:?}", r.files());
    assert!(
        r.warnings()
            .iter()
            .any(|l| l.contains("nothing was recorded: no profile files written")),
        "{:?}",
        r.warnings()
    );
}

/// The programs the tests start begin with every signal at its default action and none
/// blocked, even when the test runner itself ignores or blocks some (as under `nohup`,
/// which ignores SIGHUP): the signal tests rely on the defaults.
#[test]
fn test_programs_start_with_default_dispositions_whatever_was_inherited() {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("grep");
    cmd.args(["-E", "^Sig(Ign|Blk):", "/proc/self/status"]);
    // SAFETY: signal(2) and sigprocmask(2) in the forked child, before exec.
    unsafe {
        cmd.pre_exec(|| {
            // What nohup and some runners hand down.
            for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGPIPE, libc::SIGUSR2] {
                libc::signal(sig, libc::SIG_IGN);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        })
    };
    default_dispositions(&mut cmd);
    let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
    // Signals 1 to 31 (glibc keeps 32 and 33 for itself: it neither sets nor resets them).
    for l in out.lines() {
        let (what, mask) = l.split_once(":\t").unwrap();
        let mask = u64::from_str_radix(mask, 16).unwrap();
        assert_eq!(mask & 0x7fff_ffff, 0, "{what}: {out}");
    }
    assert_eq!(out.lines().count(), 2, "{out}");
}

/// `abort()` at SIGABRT's default action writes the final files, as SIGTERM does, then
/// dies of SIGABRT: the heap at the crash holds the 16 MiB the program kept, from the main
/// thread and from a second thread alike.
#[test]
fn abort_writes_the_files_then_dies_of_sigabrt() {
    let prog = build("aborts");
    for args in [&[][..], &["thread"][..]] {
        let r = run("abort", &prog, args, &[("RPROF_HEAP_RATE", "1")]);
        assert_eq!(
            r.output.status.signal(),
            Some(6),
            "{args:?}: {}",
            r.stderr()
        );
        let heap = r
            .files_of("heap")
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{args:?}: no heap file in {:?}", r.files()));
        let s = summarize(&load(&heap), "inuse_space");
        assert_eq!(
            s.cum("held_at_abort"),
            16 << 20,
            "{args:?}: {:?}",
            s.functions()
        );
        assert!(!r.files_of("cpu").is_empty(), "{args:?}");
    }
}
