//! CPU profiles of c_tests programs with known behaviour, checked against that truth.
//!
//! Statistical bounds: a share p of CPU estimated from n independent samples has standard
//! deviation sqrt(p(1-p)/n); tests allow 5 of those. Signals come at most once per kernel
//! tick per thread (250/s on common kernels), so n is taken as CPU seconds × min(hz, 250)
//! × 0.8, a conservative count of the signals actually delivered. The programs draw the
//! length of each pass of their work at random, so that passes do not keep step with the
//! tick and each signal is an independent draw. The runs are long enough (about 5 s of
//! CPU, n ≈ 1000) that the bounds mean something: ±0.07 around a share of 3/4 (a ratio
//! between 2.2:1 and 4.3:1), ±0.07 around 1/4.

mod common;

use common::*;

fn independent_samples(cpu_ns: i64, hz: f64) -> f64 {
    cpu_ns as f64 / 1e9 * hz.min(250.0) * 0.8
}

#[test]
fn three_to_one_split_and_total_cpu() {
    let prog = build("cpu_split");
    let r = run("split", &prog, &["4000"], &[("RPROF_CPU_HZ", "1000")]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.output.stdout, run_plain(&prog, &["4000"]).stdout);
    let files = r.files_of("cpu");
    assert_eq!(files.len(), 1, "{files:?}");
    let p = load(&files[0]);

    assert_eq!(p.sample_type_names(), ["samples", "cpu"]);
    let period_type = p.period_type.unwrap();
    assert_eq!(
        (p.str(period_type.r#type), p.str(period_type.unit)),
        ("cpu", "nanoseconds")
    );
    assert_eq!(p.period, 1_000_000);
    assert!(p.time_nanos > 0 && p.duration_nanos > 0);

    let s = summarize(&p, "cpu");
    let cpu_ns = r.cpu_ns();
    assert_within("profiled CPU vs getrusage", s.total, cpu_ns, 0.10);
    let counts = summarize(&p, "samples");
    assert_eq!(counts.total * p.period, s.total, "cpu = samples × period");

    let (three, one) = (s.cum("burn_three"), s.cum("burn_one"));
    assert_share(
        "burn_three of burn_three+burn_one",
        three,
        three + one,
        0.75,
        independent_samples(cpu_ns, 1000.0),
    );
    // The common caller and main hold (nearly) everything; the leaf is the spinning code.
    assert!(s.cum("work") as f64 >= 0.95 * s.total as f64);
    assert!(s.cum("main") as f64 >= 0.95 * s.total as f64);
    assert!(s.flat("spin") as f64 >= 0.90 * s.total as f64);
    // A single-threaded run with no dump loses nothing: about 1300 signals, more than
    // the 1024-slot buffer that rprof's thread used to drain could hold.
    assert!(
        !function_names(&p)
            .iter()
            .any(|f| f == rprof_profile::names::LOST_SAMPLES_FRAME),
        "samples were lost"
    );
    // No frame of rprof's handler or of the signal trampoline is ever recorded.
    for f in function_names(&p) {
        assert!(
            !f.contains("rprof") && !f.contains("restore_rt") && !f.contains("sigprof"),
            "library frame {f} in the profile"
        );
    }
    // Source files and lines, and the main binary's mapping with its build ID, first.
    let (locs, funcs) = (p.location_by_id(), p.function_by_id());
    let frames = p.frames(&p.sample[0], &locs, &funcs);
    let spin = frames.iter().find(|f| f.function == "spin").unwrap();
    assert!(spin.filename.ends_with("c_tests/common.h"), "{spin:?}");
    assert!(spin.line > 0);
    let main_map = &p.mapping[0];
    assert!(p.str(main_map.filename).ends_with("/cpu_split"));
    assert_eq!(p.str(main_map.build_id).len(), 40);
    assert!(main_map.has_functions);
    for l in &p.location {
        assert!(
            l.address != 0 && l.mapping_id != 0,
            "location without address: {l:?}"
        );
    }

    if let Some(top) = go_pprof_top(&files[0], &[]) {
        for f in ["burn_three", "burn_one", "work", "main", "spin"] {
            assert!(top.contains(f), "go tool pprof -top lacks {f}:\n{top}");
        }
    }
}

#[test]
fn default_rate_matches_cpu_time() {
    let prog = build("cpu_split");
    let r = run("default-hz", &prog, &["1000"], &[]);
    assert!(r.output.status.success());
    let p = load(&r.files_of("cpu")[0]);
    assert_eq!(p.period, 10_000_000, "period = 1e9 / 100 Hz");
    assert_within(
        "CPU at 100 Hz",
        summarize(&p, "cpu").total,
        r.cpu_ns(),
        0.10,
    );
}

#[test]
fn threads_each_get_their_share() {
    let prog = build("threads_equal");
    let r = run("threads", &prog, &["1000"], &[("RPROF_CPU_HZ", "1000")]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "threads_equal done\n");
    let p = load(&r.files_of("cpu")[0]);
    let s = summarize(&p, "cpu");
    let cpu_ns = r.cpu_ns();
    assert_within("CPU of four busy threads", s.total, cpu_ns, 0.10);
    let n = independent_samples(cpu_ns, 1000.0);
    for (i, f) in ["worker_a", "worker_b", "worker_c", "worker_d"]
        .iter()
        .enumerate()
    {
        assert_share(f, s.cum(f), s.total, 0.25, n);
        let thread = format!("worker-{i}");
        let t = s.by_thread.get(&thread).copied().unwrap_or(0);
        assert_share(&thread, t, s.total, 0.25, n);
    }
    // Worker stacks reach the thread entry point: no frame of rprof's trampoline between.
    assert!(s.cum("start_thread") as f64 >= 0.95 * s.total as f64);
    // Every sample names its kernel thread in a numeric label: one id per worker, four ids.
    let mut ids: std::collections::HashMap<String, std::collections::HashSet<i64>> =
        Default::default();
    for sample in &p.sample {
        let Some(name) = p.label_str(sample, "thread") else {
            continue;
        };
        let id = p
            .label_num(sample, "thread_id")
            .expect("a thread_id label on every thread's sample");
        assert!(id > 0);
        ids.entry(name.to_owned()).or_default().insert(id);
    }
    let workers: std::collections::HashSet<i64> = (0..4)
        .flat_map(|i| {
            let set = &ids[&format!("worker-{i}")];
            assert_eq!(set.len(), 1, "worker-{i}: {set:?}");
            set.iter().copied().collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(workers.len(), 4, "{ids:?}");
    // As pprof's -tagfocus uses it: one worker's id selects that worker's samples alone.
    let one = ids["worker-0"].iter().next().unwrap();
    if let Some(top) = go_pprof_top(
        &r.files_of("cpu")[0],
        &[&format!("-tagfocus=thread_id={one}")],
    ) {
        assert!(top.contains("worker_a"), "{top}");
        for other in ["worker_b", "worker_c", "worker_d"] {
            assert!(!top.contains(other), "{other} in\n{top}");
        }
    }
}

#[test]
fn truncates_deep_stacks_keeping_innermost_frames() {
    let prog = build("deep_recursion");
    let r = run("deep", &prog, &[], &[]);
    assert!(r.output.status.success());
    let p = load(&r.files_of("cpu")[0]);
    let (locs, funcs) = (p.location_by_id(), p.function_by_id());
    let mut truncated = 0;
    for sample in &p.sample {
        let frames = p.frames(sample, &locs, &funcs);
        assert!(frames.len() <= 129, "{} frames", frames.len());
        if frames.last().unwrap().function == rprof_profile::names::TRUNCATED_FRAME {
            truncated += sample.value[0];
            assert_eq!(frames[0].function, "spin");
            assert!(frames[1..128].iter().all(|f| f.function == "recurse"));
        }
    }
    let total = summarize(&p, "samples").total;
    assert!(
        truncated as f64 >= 0.95 * total as f64,
        "{truncated} of {total} truncated"
    );
}

#[test]
fn bad_rate_warns_once_and_still_profiles() {
    let prog = build("cpu_split");
    let r = run("bad-hz", &prog, &["400"], &[("RPROF_CPU_HZ", "fast")]);
    assert!(r.output.status.success());
    let warnings = r.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("RPROF_CPU_HZ")
            && warnings[0].contains("fast")
            && warnings[0].contains("using 100"),
        "{}",
        warnings[0]
    );
    let p = load(&r.files_of("cpu")[0]);
    assert_eq!(p.period, 10_000_000);
    assert!(summarize(&p, "cpu").cum("burn_three") > 0);
}

#[test]
fn dlopen_dlclose_loop_keeps_symbols_of_unloaded_library() {
    let prog = build("dlopen_loop");
    let plugin = build("libplugin.so");
    let args = [plugin.to_str().unwrap()];
    let r = run("dlopen", &prog, &args, &[("RPROF_CPU_HZ", "1000")]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.output.stdout, run_plain(&prog, &args).stdout);
    let p = load(&r.files_of("cpu")[0]);
    let s = summarize(&p, "cpu");
    let cpu_ns = r.cpu_ns();
    assert_within("CPU with dlopen/dlclose", s.total, cpu_ns, 0.10);
    let (plugin_burn, main_burn) = (s.cum("plugin_burn"), s.cum("main_burn"));
    assert_share(
        "plugin_burn of plugin_burn+main_burn",
        plugin_burn,
        plugin_burn + main_burn,
        0.5,
        independent_samples(cpu_ns, 1000.0) * 0.8,
    );
    // The unloaded library's mapping is still described.
    assert!(p
        .mapping
        .iter()
        .any(|m| p.str(m.filename).ends_with("libplugin.so") && !p.str(m.build_id).is_empty()));
}

#[test]
fn cxx_exceptions_in_flight_are_unwound_safely() {
    let prog = build("cxx_exceptions");
    let r = run("cxx", &prog, &[], &[("RPROF_CPU_HZ", "1000")]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "caught 200000\n");
    let p = load(&r.files_of("cpu")[0]);
    let s = summarize(&p, "cpu");
    assert_within("CPU with exceptions", s.total, r.cpu_ns(), 0.10);
    // Demangled C++ names, and samples taken while the C++ unwinder was running.
    assert!(
        s.functions()
            .iter()
            .any(|f| f.starts_with("rprof_test::Burner::burn")),
        "{:?}",
        s.functions()
    );
    assert!(s.cum("_Unwind_RaiseException") > 0);
    // Stacks through the exception machinery reach main.
    assert!(s.cum("main") as f64 >= 0.9 * s.total as f64);
}

#[test]
fn relative_prefix_is_resolved_at_load_despite_chdir() {
    let prog = build("chdir_burn");
    let dir = out_dir("chdir");
    let elsewhere = out_dir("chdir-target");
    // Started in `dir` with a relative prefix; the program moves to `elsewhere`.
    let run_there = || {
        let out = command(
            &prog,
            &[elsewhere.to_str().unwrap()],
            &[("RPROF_OUT", "rel/prof")],
            &dir,
        )
        .current_dir(&dir)
        .output()
        .unwrap();
        assert!(out.status.success());
        out
    };
    let out = run_there();
    std::fs::create_dir_all(dir.join("rel")).unwrap();
    let files = files_of(&dir.join("rel"), "cpu");
    // The directory did not exist when the program ran: the write failed with a warning.
    assert!(files.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("rprof: cannot write {}/rel/prof.", dir.display())),
        "{stderr}"
    );

    // Now that it exists, the file lands there, not in the directory the program moved to.
    run_there();
    assert_eq!(files_of(&dir.join("rel"), "cpu").len(), 1);
    assert!(files_in(&elsewhere).is_empty());
    assert!(!elsewhere.join("rel").exists());
}

#[test]
fn unwritable_output_is_reported_and_harmless() {
    let prog = build("cpu_split");
    let r = run(
        "unwritable",
        &prog,
        &["100"],
        &[("RPROF_OUT", "/nonexistent/dir/p")],
    );
    assert!(r.output.status.success());
    assert_eq!(r.output.stdout, run_plain(&prog, &["100"]).stdout);
    let lines = r.warnings();
    // One line for each file that could not be written, nothing else. A heap-peak file
    // exists only if a sampled block was freed after the heap's highest point, which in
    // a 100 ms run depends on the sampling draw.
    let with_peak = lines.iter().any(|l| l.contains(".heap-peak.pb.gz: "));
    let kinds: &[&str] = if with_peak {
        &["cpu", "heap", "heap-peak", "block", "mutex"]
    } else {
        &["cpu", "heap", "block", "mutex"]
    };
    assert_eq!(lines.len(), kinds.len(), "{lines:?}");
    for (line, kind) in lines.iter().zip(kinds.iter()) {
        assert!(
            line.starts_with("rprof: cannot write /nonexistent/dir/p.")
                && line.contains(&format!(".{kind}.pb.gz: ")),
            "{line}"
        );
    }
}

#[test]
fn inlined_calls_are_lines_of_one_location() {
    assert_inlined_lines(&build("inline_burn"), "inline");
}

/// Without `.debug_aranges` (LLVM's default; here removed from gcc's output), the unit an
/// address falls in is found from each unit's own ranges, and its lines are the same.
#[test]
fn lines_are_found_without_aranges() {
    let prog = build("inline_burn");
    let bare = prog.with_file_name("inline_burn_no_aranges");
    let status = std::process::Command::new("objcopy")
        .args(["--remove-section", ".debug_aranges"])
        .arg(&prog)
        .arg(&bare)
        .status()
        .expect("objcopy (binutils) is needed");
    assert!(status.success());
    let sections = std::process::Command::new("readelf")
        .arg("-S")
        .arg(&bare)
        .output()
        .unwrap();
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(sections.contains(".debug_info") && !sections.contains(".debug_aranges"));
    assert_inlined_lines(&bare, "inline-no-aranges");
}

fn assert_inlined_lines(prog: &std::path::Path, tag: &str) {
    let r = run(tag, prog, &[], &[]);
    assert!(r.output.status.success());
    let p = load(&r.files_of("cpu")[0]);
    let funcs = p.function_by_id();
    let name = |l: &rprof_profile::Line| p.str(funcs[&l.function_id].name).to_owned();
    let inlined = p
        .location
        .iter()
        .filter(|l| l.line.len() >= 2)
        .find(|l| name(&l.line[0]) == "inlined_inner")
        .expect("a location with inlined_inner inlined");
    assert_eq!(name(&inlined.line[1]), "outer_caller");
    let s = summarize(&p, "cpu");
    assert!(s.flat("inlined_inner") as f64 >= 0.9 * s.total as f64);
    assert!(s.cum("outer_caller") as f64 >= 0.9 * s.total as f64);
    // The executable's locations were all symbolized in-process; its line flags are false
    // because _start has no line information (the flags hold for all locations or none).
    let exe = &p.mapping[0];
    assert!(exe.has_functions);
    let no_line = p
        .location
        .iter()
        .filter(|l| l.mapping_id == exe.id)
        .any(|l| l.line.iter().any(|line| line.line == 0));
    assert_eq!(exe.has_line_numbers, !no_line);
}

#[test]
fn vdso_functions_are_named() {
    let prog = build("vdso_clock");
    let r = run("vdso", &prog, &[], &[("RPROF_PROFILES", "cpu")]);
    assert!(r.output.status.success());
    let p = load(&r.files_of("cpu")[0]);
    // x86-64 Linux always maps a vDSO with clock_gettime, where the program spends its time.
    let vdso = p
        .mapping
        .iter()
        .find(|m| p.str(m.filename) == "[vdso]")
        .unwrap_or_else(|| panic!("no [vdso] mapping: {:?}", p.mapping));
    // The vDSO has no file: its functions are named from its image in memory, with the
    // kernel's `__vdso_` names (not taken for glibc's wrappers of the same name).
    assert!(vdso.has_functions);
    let unnamed = p
        .location
        .iter()
        .filter(|l| l.mapping_id == vdso.id)
        .filter(|l| l.line.is_empty())
        .count();
    assert_eq!(unnamed, 0, "vDSO locations without a function");
    let s = summarize(&p, "cpu");
    let in_vdso = s.flat("__vdso_clock_gettime");
    assert!(
        in_vdso as f64 >= 0.5 * s.total as f64,
        "{in_vdso} of {} ns flat in __vdso_clock_gettime",
        s.total
    );
    assert!(s.cum("read_clock_many") as f64 >= 0.9 * s.total as f64);
}

#[test]
fn rust_names_are_demangled() {
    let prog = build("rust_burn");
    let r = run("rust", &prog, &["400"], &[("RPROF_PROFILES", "cpu")]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.output.stdout, run_plain(&prog, &["400"]).stdout);
    let p = load(&r.files_of("cpu")[0]);
    let s = summarize(&p, "cpu");
    // Paths without the hash suffix.
    let most = |f: &str| s.cum(f) as f64 >= 0.9 * s.total as f64;
    assert!(most("rust_burn::burner::burn_rust"), "{:?}", s.functions());
    assert!(
        most("rust_burn::burner::generic_burn"),
        "{:?}",
        s.functions()
    );
    assert!(most("rust_burn::main"));
    for f in s.functions() {
        assert!(
            !f.starts_with("_ZN") && !f.starts_with("_R"),
            "mangled: {f}"
        );
        // The legacy mangling's hash, "::h" and 16 hex digits, is dropped.
        let hash = f.match_indices("::h").any(|(i, _)| {
            let rest = &f[i + 3..];
            rest.len() >= 16 && rest[..16].chars().all(|c| c.is_ascii_hexdigit())
        });
        assert!(!hash, "hash kept: {f}");
    }
}

/// The GNU build ID of an ELF file, from `readelf -n`.
fn build_id(path: &std::path::Path) -> String {
    let out = std::process::Command::new("readelf")
        .arg("-n")
        .arg(path)
        .output()
        .expect("readelf (binutils) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("a build ID")
        .trim()
        .to_owned()
}

#[test]
fn stripped_program_is_named_from_its_build_id_debug_file() {
    use std::process::Command;
    let prog = build("cpu_split");
    let dir = out_dir("debuglink");
    let stripped = dir.join("cpu_split_stripped");
    let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
    ok(Command::new("objcopy")
        .arg("--strip-all")
        .arg(&prog)
        .arg(&stripped));
    let id = build_id(&stripped);
    let debug_dir = std::path::PathBuf::from(format!("/usr/lib/debug/.build-id/{}", &id[..2]));
    let writable = std::fs::create_dir_all(&debug_dir).is_ok();
    if !have_tool(
        "write access to /usr/lib/debug",
        writable,
        "nothing: run as root",
    ) {
        return;
    }
    let debug_file = debug_dir.join(format!("{}.debug", &id[2..]));
    ok(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&prog)
        .arg(&debug_file));
    let r = run(
        "debuglink-run",
        &stripped,
        &["400"],
        &[("RPROF_PROFILES", "cpu")],
    );
    let _ = std::fs::remove_file(&debug_file);
    let _ = std::fs::remove_dir(&debug_dir);
    assert!(r.output.status.success(), "{}", r.stderr());
    let p = load(&r.files_of("cpu")[0]);
    let s = summarize(&p, "cpu");
    for f in ["burn_three", "burn_one", "work", "main"] {
        assert!(s.cum(f) > 0, "{f} not named: {:?}", s.functions());
    }
}

/// A thread with a 16 KiB stack recursing until less than 1 KiB is left, then burning CPU
/// there: the kernel's signal frame does not fit below it, so a timer signal delivered on
/// that stack kills the thread (SIGSEGV, every run before rprof gave threads an alternate
/// stack). It survives, and its stacks are whole, from the spin to the thread's start.
/// A thread with an alternate stack of its own keeps it (rprof's handler runs there); when
/// that leaves too little room to walk, the stacks keep their leaf and are counted.
#[test]
fn a_nearly_full_small_stack_survives_timer_signals() {
    let prog = build("small_stack");
    for _ in 0..3 {
        let r = run("small-stack", &prog, &[], &[("RPROF_CPU_HZ", "1000")]);
        assert!(
            r.output.status.success(),
            "{:?} {}",
            r.output.status,
            r.stderr()
        );
        assert!(r.stdout().starts_with("depth="), "{}", r.stdout());
        let s = summarize(&load(&r.files_of("cpu")[0]), "cpu");
        assert!(s.flat("spin") > 100_000_000, "{:?}", s.functions());
        assert_eq!(s.cum("descend"), s.cum("spin"), "{:?}", s.functions());
        assert_eq!(s.cum("deep"), s.cum("spin"), "{:?}", s.functions());
    }
    let r = run(
        "small-altstack",
        &prog,
        &["own-altstack"],
        &[("RPROF_CPU_HZ", "1000")],
    );
    assert!(
        r.output.status.success(),
        "{:?} {}",
        r.output.status,
        r.stderr()
    );
    let p = load(&r.files_of("cpu")[0]);
    assert!(summarize(&p, "cpu").flat("spin") > 100_000_000);
    assert!(
        p.comments()
            .iter()
            .any(|c| c.contains("kept only their innermost frame")),
        "{:?}",
        p.comments()
    );
}

/// Threads rprof does not see start are found and sampled: one made through libc's own
/// pthread_create (looked up past the interposer, as jemalloc's background threads are)
/// and one made with a raw clone each show at least half the CPU they used. The first,
/// once it waited in a hooked lock, has whole stacks (its CPU and its wait); the raw one
/// keeps its innermost frame, and a comment says why.
#[test]
fn threads_made_past_the_interposer_are_found_and_sampled() {
    let prog = build("hidden_threads");
    let r = run(
        "hidden-threads",
        &prog,
        &[],
        &[("RPROF_MUTEX_FRACTION", "1")],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    let (hidden, raw) = (r.printed("hidden_cpu_ns"), r.printed("raw_cpu_ns"));
    let p = load(&r.files_of("cpu")[0]);
    let s = summarize(&p, "cpu");
    let hidden_seen = s.cum("hidden_burn");
    assert!(
        hidden_seen * 2 >= hidden,
        "hidden_burn {hidden_seen} of {hidden} ns"
    );
    assert_eq!(s.cum("hidden_start"), hidden_seen, "{:?}", s.functions());
    let raw_seen = s.flat("spin") - hidden_seen;
    assert!(
        raw_seen * 2 >= raw,
        "the raw clone's spin {raw_seen} of {raw} ns"
    );
    assert!(
        p.comments()
            .iter()
            .any(|c| c.contains("2 thread(s) were found running")),
        "{:?}",
        p.comments()
    );
    let block = summarize(&load(&r.files_of("block")[0]), "delay");
    assert!(
        block.cum("hidden_wait") > 0 && block.cum("hidden_start") == block.cum("hidden_wait"),
        "{:?}",
        block.functions()
    );
}
