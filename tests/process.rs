//! Processes and signals: fork, exec, the dump signal, death by SIGINT/SIGTERM, and the
//! program's own view of its signal dispositions.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn forked_child_writes_its_own_profile() {
    let prog = build("fork_child");
    let r = run("fork", &prog, &[], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.output.stdout, run_plain(&prog, &[]).stdout);
    let child: u32 = r
        .stderr()
        .lines()
        .find_map(|l| l.strip_prefix("child=")?.parse().ok())
        .expect("child pid");
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
fn start_long_running(
    dir: &std::path::Path,
    seconds: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let prog = build("long_running");
    let mut child = spawn(&prog, &[seconds], &[], dir);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, out)
}

fn rest_of(mut out: BufReader<std::process::ChildStdout>) -> String {
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
        for _ in 0..50 {
            if path.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(path.exists(), "snapshot {n} missing");
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

mod libc_sig {
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
}

#[test]
fn program_sees_its_own_dispositions_and_its_handlers_win() {
    let prog = build("signals_view");
    let dir = out_dir("signals-view");
    let mut child = spawn(&prog, &[], &[], &dir);
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
        "profile written at its normal exit"
    );
}

#[test]
fn program_taking_sigprof_stops_cpu_profiling_with_a_warning() {
    let prog = build("signals_view");
    let r = run("sigprof", &prog, &["prof"], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(r.stdout().contains("own SIGPROF handler ran"));
    let warnings = r.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("SIGPROF"));
    assert_eq!(r.files_of("cpu").len(), 1);
}

#[test]
fn ignored_sigint_stays_ignored() {
    // A shell's background job, or nohup, starts a program with signals ignored.
    let prog = build("signals_view");
    let dir = out_dir("ignored");
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("trap '' INT; exec {}", prog.display()))
        .env("LD_PRELOAD", lib())
        .env("RPROF_OUT", dir.join("rprof"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("INT=ignore\n"));
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
    let warnings = r.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("signal 12")));
    assert!(warnings.iter().any(|w| w.contains("SIGPROF")));
}
