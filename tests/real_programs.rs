//! What real programs do with signals, stacks and descriptors (c_tests/signal_habits.c
//! reproduces each habit; the real programs run too where installed): rprof must profile
//! them without changing their output, exit status or signal view.
//!
//! CPU bounds: every thread has its own CPU-time timer with a random phase, so a thread's
//! sample count is its CPU time over the period to within one period, plus the kernel
//! tick's rounding (4 ms at 250 Hz against the 10 ms period): a bound of 25 % of a few
//! tenths of a second of CPU covers that with room for scheduling noise. The value
//! without each fix is 0, which every bound rejects.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

const SIGTERM: i32 = 15;
const SIGPROF: i32 = 27;

fn habits() -> std::path::PathBuf {
    build("signal_habits")
}

fn comments(p: &rprof_profile::Profile) -> Vec<String> {
    p.comment.iter().map(|&i| p.str(i).to_owned()).collect()
}

/// The one profile of `kind` in `dir` written by `pid`.
fn profile_of(dir: &Path, pid: u32, kind: &str) -> rprof_profile::Profile {
    load(&dir.join(format!("rprof.{pid}.{kind}.pb.gz")))
}

/// Item 1: xz -T2's habit. Its workers start with every signal blocked and are sampled
/// all the same; every mask the program reads back is the one it set; the worker that
/// blocks the timer signal with a raw system call is not sampled, and that is said once.
#[test]
fn threads_that_block_every_signal_are_sampled() {
    let prog = habits();
    let r = run("block-all", &prog, &["block_all"], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(
        r.output.stdout,
        run_plain(&prog, &["block_all"]).stdout,
        "the masks read back differ"
    );
    assert!(!r.stdout().contains(": no"), "{}", r.stdout());
    let files = r.files_of("cpu");
    assert_eq!(files.len(), 1, "{files:?}");
    let p = load(&files[0]);
    let s = summarize(&p, "cpu");
    // burn_blocked is 600 of the 700 million spin iterations.
    let truth = r.cpu_ns() * 600 / 700;
    assert_within("burn_blocked", s.cum("burn_blocked"), truth, 0.25);
    assert_eq!(
        s.cum("burn_raw"),
        0,
        "a thread with the signal blocked was sampled?"
    );
    let said: Vec<_> = r
        .warnings()
        .into_iter()
        .filter(|w| w.contains("raw system call"))
        .collect();
    assert_eq!(said.len(), 1, "{:?}", r.warnings());
    assert!(
        comments(&p)
            .iter()
            .any(|c| c.contains("1 thread(s) blocked")),
        "{:?}",
        comments(&p)
    );
}

/// Item 2: GNU sort's habit. The program's own SIGPROF handler gets its own ticks and
/// none of rprof's, and CPU profiling goes on, on another signal, without a word.
#[test]
fn program_taking_sigprof_keeps_cpu_profiling() {
    let prog = habits();
    let r = run("take-prof", &prog, &["take_prof"], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.output.stdout, run_plain(&prog, &["take_prof"]).stdout);
    assert!(
        r.stdout().contains("rprof timer signals seen: 0\n"),
        "{}",
        r.stdout()
    );
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    let s = summarize(&load(&r.files_of("cpu")[0]), "cpu");
    // burn_after_take is 300 of about 300 + 200 (the loop under its own timer) million
    // iterations, after the handler went in.
    assert_within(
        "burn_after_take",
        s.cum("burn_after_take"),
        r.cpu_ns() * 300 / 500,
        0.3,
    );
}

/// Item 2: a program that takes every signal rprof could move to: CPU profiling stops,
/// with one line, and none of its timer signals reaches the program.
#[test]
fn no_free_signal_stops_cpu_profiling_with_one_line() {
    let prog = habits();
    let r = run(
        "take-all",
        &prog,
        &["take_all"],
        &[("RPROF_HEAP_RATE", "1")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "rprof timer signals seen: 0\n");
    let w = r.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("no signal is free"), "{w:?}");
}

/// Item 2, RPROF_CPU_SIGNAL: the timers use the chosen signal from the start.
#[test]
fn cpu_signal_can_be_chosen() {
    let prog = habits();
    let r = run(
        "cpu-signal",
        &prog,
        &["take_prof"],
        &[("RPROF_CPU_SIGNAL", "RTMIN+4")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    assert!(r.stdout().contains("rprof timer signals seen: 0\n"));
    let s = summarize(&load(&r.files_of("cpu")[0]), "cpu");
    assert!(s.cum("burn_after_take") > 0);
}

/// Item 3: SIGPROF at its default action ends the program (status 128+27), whether the
/// program's own setitimer sent it or `kill -PROF`; the files are written first.
#[test]
fn sigprof_at_its_default_action_ends_the_program_with_files() {
    let prog = habits();
    let r = run("prof-default", &prog, &["prof_default"], &[]);
    assert_eq!(
        r.output.status.signal(),
        Some(SIGPROF),
        "{:?}",
        r.output.status
    );
    assert_eq!(
        run_plain(&prog, &["prof_default"]).status.signal(),
        Some(SIGPROF)
    );
    let s = summarize(&load(&r.files_of("cpu")[0]), "cpu");
    assert!(s.cum("burn_before_prof") > 0);

    let dir = out_dir("kill-prof");
    let mut child = spawn(&prog, &["wait_prof"], &[("RPROF_HEAP_RATE", "1")], &dir);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "waiting\n");
    kill(child.id(), "PROF");
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(SIGPROF), "{status:?}");
    assert!(dir
        .join(format!("rprof.{}.heap.pb.gz", child.id()))
        .exists());
}

/// Item 4: node's habit. A handler installed with SA_RESETHAND raises its signal again:
/// the program dies of it, as without rprof, and its files are written.
#[test]
fn resethand_handler_that_reraises_dies_with_files() {
    let prog = habits();
    let r = run("resethand", &prog, &["resethand"], &[]);
    assert_eq!(
        r.output.status.signal(),
        Some(SIGTERM),
        "{:?}",
        r.output.status
    );
    assert_eq!(r.stdout(), "handler ran\n");
    assert_eq!(r.output.stdout, run_plain(&prog, &["resethand"]).stdout);
    let s = summarize(&load(&r.files_of("cpu")[0]), "cpu");
    assert!(s.cum("burn_before_term") > 0);
}

/// Item 5: a program that opens a data file as fd 2 finds only its own bytes in it; the
/// line rprof would have written is dropped and counted.
#[test]
fn rprof_never_writes_into_a_file_that_became_fd_2() {
    let prog = habits();
    let dir = out_dir("stderr-swap");
    let data = dir.join("data.txt");
    let out = command(&prog, &["stderr_swap", data.to_str().unwrap()], &[], &dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "data\nmore data\n");
    let p = load(&files_of(&dir, "cpu")[0]);
    assert!(
        comments(&p)
            .iter()
            .any(|c| c.contains("1 diagnostic line(s) dropped")),
        "{:?}",
        comments(&p)
    );
}

/// Item 6: fork children that end with _exit or _Exit write their files; a vfork child
/// writes nothing.
#[test]
fn fork_children_ending_with_underscore_exit_write_their_files() {
    let prog = habits();
    let r = run("underscore-exit", &prog, &["_exit"], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "statuses 3 4 0\n");
    for child in ["child", "child2"] {
        let pid = r.printed(child) as u32;
        let s = summarize(&profile_of(&r.dir, pid, "cpu"), "cpu");
        assert!(
            s.cum("child_work") as f64 >= 0.8 * s.total as f64,
            "{child}"
        );
    }
    let vchild = format!(".{}.", r.printed("vchild"));
    assert!(
        r.files()
            .iter()
            .all(|f| !f.to_string_lossy().contains(&vchild)),
        "{:?}",
        r.files()
    );
}

/// Item 7: a thread with a 16 KiB stack that leaves only a signal frame and 1.5 KiB below
/// its deepest frame is sampled without overflowing (the handler once needed 4.7 KiB).
/// Its handler runs on the alternate stack rprof gave the thread, so the stacks are whole
/// either way (tests/cpu.rs has the thread whose own alternate stack is that small).
#[test]
fn small_thread_stacks_do_not_overflow() {
    let prog = habits();
    for room in ["1536", "4096"] {
        let r = run(
            "small-stack",
            &prog,
            &["small_stack", room],
            &[("RPROF_CPU_HZ", "1000")],
        );
        assert!(
            r.output.status.success(),
            "{room}: {:?} {}",
            r.output.status,
            r.stderr()
        );
        assert_eq!(r.stdout(), "small stack thread done\n");
        assert!(r.printed("depth") >= 10, "{}", r.stderr());
        let p = load(&r.files_of("cpu")[0]);
        let s = summarize(&p, "cpu");
        assert!(s.cum("spin") > 0, "{room}");
        assert!(
            s.cum("small") > 0 && s.cum("deep") > 0,
            "{room}: {:?}",
            s.functions()
        );
    }
}

/// Item 9: nobody else can read a profile.
#[test]
fn profiles_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let prog = habits();
    let r = run("modes", &prog, &["resethand"], &[]);
    let files = r.files();
    assert!(!files.is_empty());
    for f in files {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
}

/// Item 10: an empty variable means its default, without a word; names in values are
/// case-insensitive.
#[test]
fn empty_variables_mean_defaults_and_names_ignore_case() {
    let prog = habits();
    let r = run(
        "empty-vars",
        &prog,
        &["resethand"],
        &[
            ("RPROF_PROFILES", ""),
            ("RPROF_LOG", "INFO"),
            ("RPROF_SIGNAL", ""),
        ],
    );
    assert!(
        r.warnings().iter().any(|w| w.contains("wrote")),
        "RPROF_LOG=INFO: {:?}",
        r.warnings()
    );
    for kind in ["cpu", "heap", "block", "mutex"] {
        assert_eq!(r.files_of(kind).len(), 1, "{kind}");
    }
}

// ---- The real programs, where installed -------------------------------------------

fn installed(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `xz -T2` compressing data that takes its worker threads a while: they are sampled.
#[test]
fn xz_with_two_threads_is_sampled() {
    if !have_tool("xz", installed("xz"), "xz-utils") {
        return;
    }
    let dir = out_dir("xz");
    let input = dir.join("input");
    // 8 MiB of random 6-bit bytes: three blocks at -1, about 1.9 s of CPU in the two
    // workers here.
    let mut bytes = Vec::with_capacity(8 << 20);
    let mut x: u64 = 88172645463325252;
    while bytes.len() < 8 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.push((x % 64) as u8);
    }
    std::fs::write(&input, &bytes).unwrap();
    let out = command(
        Path::new("xz"),
        &["-T2", "-1", "-k", "-c", input.to_str().unwrap()],
        &[],
        &dir,
    )
    .stdout(Stdio::null())
    .output()
    .unwrap();
    assert!(out.status.success());
    let p = load(&files_of(&dir, "cpu")[0]);
    let s = summarize(&p, "cpu");
    // Without rprof's care its workers, which do all the work, are never sampled.
    assert!(s.total >= 800_000_000, "{} ns sampled", s.total);
    assert!(
        s.by_thread.len() >= 2 || s.cum("start_thread") > s.total / 2,
        "{:?}",
        s.by_thread
    );
}

/// `sort` in a pipeline (it takes SIGPROF among the signals it cleans up on): no warning,
/// the same output, and CPU samples.
#[test]
fn sort_in_a_pipeline_is_profiled_without_a_warning() {
    let dir = out_dir("sort");
    let lines: String = (0..400_000u64)
        .map(|i| format!("{}\n", i.wrapping_mul(2654435761) % 1_000_003))
        .collect();
    let input = dir.join("lines");
    std::fs::write(&input, &lines).unwrap();
    let script = format!("sort -n {} | sort -rn | head -3", input.display());
    let plain = Command::new("sh").args(["-c", &script]).output().unwrap();
    let out = command(Path::new("/bin/sh"), &["-c", &script], &[], &dir)
        .output()
        .unwrap();
    assert_eq!(out.stdout, plain.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("rprof:"), "{stderr}");
    let sampled: i64 = files_of(&dir, "cpu")
        .iter()
        .map(|f| summarize(&load(f), "cpu").total)
        .sum();
    assert!(sampled > 0);
}

fn python() -> Option<&'static str> {
    have_tool("python3", installed("python3"), "python3").then_some("python3")
}

/// Python's multiprocessing with the fork start method: the workers, which end with
/// os._exit, leave their profiles.
#[test]
fn python_fork_pool_workers_write_profiles() {
    let Some(py) = python() else {
        return;
    };
    let dir = out_dir("py-mp");
    let script = "import multiprocessing as m\n\
def work(n):\n    s = 0\n    for i in range(n): s += i * i\n    return s\n\
if __name__ == '__main__':\n    m.set_start_method('fork')\n\
    with m.Pool(2) as p: print(sum(p.map(work, [2000000] * 4)))\n";
    let out = command(Path::new(py), &["-c", script], &[], &dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = Command::new(py).args(["-c", script]).output().unwrap();
    assert_eq!(out.stdout, plain.stdout);
    // The work is in the workers: profiles of at least two processes besides the parent
    // hold most of the samples.
    let mut per_file: Vec<i64> = files_of(&dir, "cpu")
        .iter()
        .map(|f| summarize(&load(f), "cpu").total)
        .collect();
    per_file.sort_unstable();
    per_file.reverse();
    assert!(per_file.len() >= 3, "{per_file:?}");
    assert!(per_file[1] > 0, "{per_file:?}");
}

/// Python's own ITIMER_PROF at the default action (signal.setitimer): it dies of SIGPROF
/// as without rprof.
#[test]
fn python_setitimer_at_default_action_dies_of_sigprof() {
    let Some(py) = python() else {
        return;
    };
    // Bounded (about 5 s), so that a lost SIGPROF fails the test rather than hanging it.
    let script = "import signal, time\nsignal.setitimer(signal.ITIMER_PROF, 0.05)\n\
end = time.time() + 5\nwhile time.time() < end: pass\n";
    let dir = out_dir("py-itimer");
    let out = command(Path::new(py), &["-c", script], &[], &dir)
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(SIGPROF), "{:?}", out.status);
}

/// (file offset, size) of the PLT sections of `prog`, from `objdump -h`.
fn plt_sections(prog: &Path) -> Vec<(u64, u64)> {
    let out = Command::new("objdump")
        .arg("-h")
        .arg(prog)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let named = w.get(1).is_some_and(|n| n.starts_with(".plt"));
            let size = u64::from_str_radix(w.get(2)?, 16).ok()?;
            let off = u64::from_str_radix(w.get(5)?, 16).ok()?;
            named.then_some((off, size))
        })
        .collect()
}

/// Item 8: PLT entries are named `name@plt`, so every location of the profile is named,
/// every mapping says so, and `go tool pprof` keeps rprof's names instead of symbolizing
/// the program again from its file (which, before, lost `main` and the program's own
/// functions behind `[plt_calls]`).
#[test]
fn plt_entries_are_named_and_pprof_keeps_the_names() {
    let prog = build("plt_calls");
    let r = run("plt", &prog, &[], &[("RPROF_CPU_HZ", "1000")]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let file = &r.files_of("cpu")[0];
    let p = load(file);
    // Whether samples land on the PLT entry depends on the CPU (about a quarter of them on
    // an Intel machine, none on an AMD EPYC here, whose interrupts return past the jump):
    // every sampled address inside the program's PLT sections must be named `…@plt`.
    let plt = plt_sections(&prog);
    let main_mapping = p
        .mapping
        .iter()
        .find(|m| p.str(m.filename) == prog.to_string_lossy())
        .expect("the program's mapping");
    let (locs, funcs) = (p.location_by_id(), p.function_by_id());
    let mut in_plt = 0;
    for l in p
        .location
        .iter()
        .filter(|l| l.mapping_id == main_mapping.id)
    {
        let off = l.address - main_mapping.memory_start + main_mapping.file_offset;
        if plt
            .iter()
            .any(|&(start, size)| (start..start + size).contains(&off))
        {
            in_plt += 1;
            let name = l
                .line
                .first()
                .and_then(|line| funcs.get(&line.function_id))
                .map_or("", |f| p.str(f.name));
            assert!(name.ends_with("@plt"), "{name} at PLT offset {off:#x}");
        }
    }
    if in_plt == 0 {
        eprintln!("no sample landed on a PLT entry on this CPU: PLT names not exercised");
    } else {
        assert!(function_names(&p).iter().any(|n| n == "strlen@plt"));
    }
    for sample in &p.sample {
        for f in p.frames(sample, &locs, &funcs) {
            assert!(!f.function.is_empty(), "an unnamed location");
        }
    }
    for m in &p.mapping {
        if p.location.iter().any(|l| l.mapping_id == m.id) {
            assert!(m.has_functions, "{} lacks has_functions", p.str(m.filename));
        }
    }
    let Some(top) = go_pprof_top(file, &[]) else {
        return;
    };
    let plain = go_pprof_top(file, &["-symbolize=none"]).unwrap();
    let names_of = |t: &str| {
        let mut v: Vec<String> = t
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("flat"))
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(5).map(str::to_owned))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names_of(&top), names_of(&plain), "{top}\n{plain}");
    assert!(names_of(&top).iter().any(|n| n == "main"), "{top}");
}
