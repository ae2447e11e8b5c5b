//! The `rprof` command on profiles the library writes.

mod common;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn rprof() -> Command {
    let bin = release_dir().join("rprof");
    assert!(bin.exists(), "build with `cargo build --release` first");
    let mut cmd = Command::new(bin);
    clear_rprof_env(&mut cmd);
    default_dispositions(&mut cmd);
    cmd
}

/// The table rows of a -top report (from the column header on).
fn table(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn run_then_top_matches_go_pprof() {
    let prog = build("cpu_split");
    let dir = out_dir("cli-run");
    let prefix = dir.join("p");
    let out = rprof()
        .args(["run", "--cpu-hz", "1000", "-o"])
        .arg(&prefix)
        .arg("--")
        .arg(&prog)
        .arg("800")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, run_plain(&prog, &["800"]).stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let files = files_of(&dir, "cpu");
    assert_eq!(files.len(), 1);
    // One report line for the one process: its pid, program, samples and files.
    let pid = files[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("rprof: {pid} cpu_split: ")))
        .unwrap_or_else(|| panic!("no report line for {pid}: {stderr}"));
    let samples = summarize(&load(&files[0]), "samples").total;
    assert!(
        line.contains(&format!(": {samples} cpu, ")) && line.ends_with(&format!("p.{pid}.*.pb.gz")),
        "{line}"
    );

    let top = rprof().arg("top").arg(&files[0]).output().unwrap();
    assert!(top.status.success());
    let text = String::from_utf8_lossy(&top.stdout).into_owned();
    let rows = table(&text);
    assert!(rows[1].ends_with(" spin"), "{text}");
    let p = load(&files[0]);
    let s = summarize(&p, "cpu");
    // The percentages shown are those of the decoded values.
    let three = rows.iter().find(|r| r.ends_with(" burn_three")).unwrap();
    let pct = format!(
        "{:.2}%",
        s.cum("burn_three") as f64 * 100.0 / s.total as f64
    );
    assert!(three.contains(&pct), "{three} lacks {pct}");
    if let Some(go) = go_pprof_top(&files[0], &[]) {
        assert_eq!(
            rows,
            table(&go),
            "rprof top:\n{text}\ngo tool pprof -top:\n{go}"
        );
    }
}

#[test]
fn run_passes_exit_status_and_death_by_signal() {
    let prefix = out_dir("cli-status").join("p");
    let status = rprof()
        .args(["run", "-o"])
        .arg(&prefix)
        .args(["--", "sh", "-c", "exit 7"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
    let status = rprof()
        .args(["run", "-o"])
        .arg(&prefix)
        .args(["--", "sh", "-c", "kill -TERM $$"])
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(15));
}

#[test]
fn bad_input_gives_one_line_and_nonzero_exit() {
    let dir = out_dir("cli-bad");
    let not_profile = dir.join("text.pb.gz");
    std::fs::write(&not_profile, "hello, this is not a profile\n").unwrap();
    let prog = build("cpu_split");
    let r = run("cli-bad-src", &prog, &["100"], &[]);
    let good = r.files_of("cpu")[0].clone();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.join("truncated.pb.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["top".into(), "/nonexistent.pb.gz".into()],
            "No such file",
        ),
        (
            vec!["top".into(), not_profile.display().to_string()],
            "not a profile",
        ),
        (vec!["top".into(), truncated.display().to_string()], "gzip"),
        (
            vec![
                "top".into(),
                good.display().to_string(),
                "--sample-index".into(),
                "bogus".into(),
            ],
            "samples, cpu",
        ),
        (vec!["frobnicate".into()], "unknown command"),
        (
            vec![
                "run".into(),
                "--push".into(),
                "localhost:4040".into(),
                "true".into(),
            ],
            "--push: RPROF_PUSH=\"localhost:4040\" is not a URL",
        ),
        (
            vec![
                "run".into(),
                "--labels".into(),
                "a=1,bad".into(),
                "true".into(),
            ],
            "--labels: RPROF_LABELS=",
        ),
        (
            vec!["flame".into(), truncated.display().to_string()],
            "gzip",
        ),
        (
            vec![
                "diff".into(),
                good.display().to_string(),
                not_profile.display().to_string(),
            ],
            "not a profile",
        ),
    ];
    for (args, expect) in cases {
        let out = rprof().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.starts_with("rprof: ") && stderr.contains(expect),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
}

/// Two CPU profiles of cpu_split (400 and 800 units) and a heap profile.
fn two_runs() -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let prog = build("cpu_split");
    // 250 Hz: about 130 and 260 samples, so that burn_three's 3/4 never ties burn_one's
    // 1/4 (the --cum order below).
    let hz = [("RPROF_CPU_HZ", "250")];
    let a = run("cli-a", &prog, &["400"], &hz);
    let b = run("cli-b", &prog, &["800"], &hz);
    let heap = build("heap_sites");
    // Every allocation recorded: at the default rate churn's 25 blocks of 64 KiB would all
    // go unsampled about 4 % of the time.
    let h = run("cli-heap", &heap, &["64"], &[("RPROF_HEAP_RATE", "1")]);
    (
        a.files_of("cpu")[0].clone(),
        b.files_of("cpu")[0].clone(),
        h.files_of("heap")[0].clone(),
    )
}

#[test]
fn flame_writes_well_formed_svg_with_the_functions() {
    let (cpu, _, heap) = two_runs();
    for (file, index, expect) in [
        (&cpu, None, vec!["burn_three", "burn_one", "main"]),
        (
            &heap,
            Some("alloc_space"),
            vec!["keep_live", "churn", "mixed_site"],
        ),
    ] {
        let out = file.with_extension("svg");
        let mut cmd = rprof();
        cmd.arg("flame").arg(file).arg("-o").arg(&out);
        if let Some(i) = index {
            cmd.args(["--sample-index", i]);
        }
        assert!(cmd.status().unwrap().success());
        let svg = std::fs::read_to_string(&out).unwrap();
        let mut reader = quick_xml::Reader::from_str(&svg);
        let mut elements = 0;
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(quick_xml::events::Event::Start(_)) => elements += 1,
                Ok(_) => {}
                Err(e) => panic!("{}: not well-formed XML: {e}", out.display()),
            }
        }
        assert!(elements > 10);
        for f in expect {
            // Each frame has a hover title with its value and percentage.
            assert!(
                svg.contains(&format!("<title>{f} (")),
                "{f} missing in {}",
                out.display()
            );
        }
    }
}

/// `rprof diff` and `go tool pprof -top -diff_base` give the same table.
fn assert_diff_matches_go(base: &Path, new: &Path, index: Option<&str>) -> Vec<String> {
    let mut cmd = rprof();
    cmd.arg("diff").arg(base).arg(new);
    if let Some(i) = index {
        cmd.args(["--sample-index", i]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let ours = table(&text);
    let mut extra = vec![format!("-diff_base={}", base.display())];
    if let Some(i) = index {
        extra.push(format!("-sample_index={i}"));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    if let Some(go) = go_pprof_top(new, &extra) {
        assert_eq!(ours, table(&go), "rprof diff:\n{text}\ngo:\n{go}");
    }
    ours
}

#[test]
fn diff_matches_go_pprof_diff_base() {
    let (a, b, _) = two_runs();
    // 800 units minus 400 units: all the growth is in spin, under burn_three and burn_one.
    let ours = assert_diff_matches_go(&a, &b, None);
    assert!(ours[1].ends_with(" spin"), "{ours:?}");
    // 400 minus 800: negative rows, whose percentages pprof prints without a sign.
    let ours = assert_diff_matches_go(&b, &a, None);
    assert!(
        ours[1].starts_with('-') && ours[1].ends_with(" spin"),
        "{ours:?}"
    );
    let pct = ours[1].split_whitespace().nth(1).unwrap();
    assert!(!pct.starts_with('-'), "{ours:?}");
}

#[test]
fn diff_of_heap_profiles_with_a_sample_index() {
    let heap = build("heap_sites");
    let files: Vec<_> = ["64", "32"]
        .iter()
        .map(|div| {
            let r = run("cli-heap-diff", &heap, &[div], &[("RPROF_HEAP_RATE", "1")]);
            r.files_of("heap")[0].clone()
        })
        .collect();
    // Dividing the small loops by 32 instead of 64 doubles churn's and mixed_site's small
    // blocks: 25 more blocks of 64 KiB allocated at churn, 16384 more of 16 B at mixed_site.
    let ours = assert_diff_matches_go(&files[0], &files[1], Some("alloc_space"));
    let churn = ours.iter().find(|r| r.ends_with(" churn")).unwrap();
    assert!(churn.starts_with("1.56MB "), "{ours:?}");
    let ours = assert_diff_matches_go(&files[1], &files[0], Some("alloc_objects"));
    let mixed = ours.iter().find(|r| r.ends_with(" mixed_site")).unwrap();
    assert!(mixed.starts_with("-16384 "), "{ours:?}");
}

/// `rprof run -o <dir>/p -- long_running 20`, once it is running (300 ms after "ready"),
/// and its stdout, to be kept open (the program dies of SIGPIPE once it is closed).
fn run_long_running(
    dir: &Path,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    let prog = build("long_running");
    let mut child = rprof()
        .args(["run", "-o"])
        .arg(dir.join("p"))
        .arg("--")
        .arg(&prog)
        .arg("20")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    std::thread::sleep(std::time::Duration::from_millis(300));
    (child, out)
}

/// Waits up to 5 s for the first CPU snapshot file in `dir`.
fn wait_for_snapshot(dir: &Path) {
    for _ in 0..250 {
        if files_of(dir, "cpu")
            .iter()
            .any(|f| f.to_string_lossy().contains(".cpu.1."))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn run_forwards_the_dump_signal_and_termination() {
    let dir = out_dir("cli-forward");
    let (mut child, _out) = run_long_running(&dir);
    kill(child.id(), "USR2");
    wait_for_snapshot(&dir);
    assert!(
        files_of(&dir, "cpu")
            .iter()
            .any(|f| f.to_string_lossy().contains(".cpu.1.")),
        "the snapshot signal reached the program"
    );
    kill(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(15),
        "rprof dies of the program's signal"
    );
    let finals = files_of(&dir, "cpu");
    assert!(
        finals
            .iter()
            .any(|f| !f.to_string_lossy().contains(".cpu.1.")),
        "{finals:?}"
    );
}

#[test]
fn inspect_and_top_options() {
    let (cpu, _, heap) = two_runs();
    let out = rprof().arg("inspect").arg(&heap).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for expect in [
        "sample types: alloc_objects/count, alloc_space/bytes, inuse_objects/count, inuse_space/bytes",
        "period: 1 space/bytes",
        "lost: ",
        "truncated stacks: ",
        "build-id ",
        "Mallocs = ",
        "RSS = ",
    ] {
        assert!(text.contains(expect), "inspect lacks {expect:?}:\n{text}");
    }
    let p = load(&heap);
    assert!(text.contains(&format!(
        "samples: {}, locations: {}",
        p.sample.len(),
        p.location.len()
    )));

    // -n limits the rows; --cum sorts by cum (main holds everything, so it comes first
    // among the functions of the program).
    let top = |args: &[&str]| {
        let out = rprof().arg("top").arg(&cpu).args(args).output().unwrap();
        assert!(out.status.success());
        table(&String::from_utf8_lossy(&out.stdout))
    };
    assert_eq!(top(&["-n", "2"]).len(), 3, "header and two rows");
    let by_cum = top(&["--cum"]);
    let pos = |f: &str| {
        by_cum
            .iter()
            .position(|r| r.ends_with(&format!(" {f}")))
            .unwrap()
    };
    assert!(pos("main") < pos("burn_three") && pos("burn_three") < pos("burn_one"));
    let samples = top(&["--sample-index", "samples"]);
    assert!(
        samples[1].ends_with(" spin") && !samples[1].contains("ms"),
        "{samples:?}"
    );
}

/// (function, width in %, fg:w) of every frame drawn in a flame graph.
fn flame_frames(svg: &str) -> Vec<(String, f64, i64)> {
    let mut out = Vec::new();
    for part in svg.split("<g><title>").skip(1) {
        let name = part.split(" (").next().unwrap().to_owned();
        let attr = |a: &str| {
            let start = part.find(&format!(" {a}=\"")).unwrap() + a.len() + 3;
            let len = part[start..].find('"').unwrap();
            part[start..start + len].trim_end_matches('%').to_owned()
        };
        out.push((
            name,
            attr("width").parse().unwrap(),
            attr("fg:w").parse().unwrap(),
        ));
    }
    out
}

#[test]
fn flame_graph_widths_are_the_values() {
    let (cpu, _, heap) = two_runs();
    for (file, index, functions) in [
        (&cpu, "cpu", vec!["burn_three", "burn_one", "work", "main"]),
        (
            &heap,
            "alloc_space",
            vec!["keep_live", "churn", "mixed_site"],
        ),
    ] {
        let out = file.with_extension(format!("{index}.svg"));
        let st = rprof()
            .arg("flame")
            .arg(file)
            .args(["--sample-index", index, "-o"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        let frames = flame_frames(&std::fs::read_to_string(&out).unwrap());
        let s = summarize(&load(file), index);
        let all = frames.iter().find(|f| f.0 == "all").unwrap();
        assert_eq!(all.2, s.total, "the root is the total");
        for f in &functions {
            // Each of these functions is on a stack once: its frames add up to its cum.
            let drawn: i64 = frames.iter().filter(|x| x.0 == *f).map(|x| x.2).sum();
            assert_eq!(drawn, s.cum(f), "{f} in {}", out.display());
            assert!(drawn > 0, "{f}");
        }
        for (name, width, w) in &frames {
            let expect = *w as f64 * 100.0 / s.total as f64;
            assert!(
                (width - expect).abs() < 0.001,
                "{name}: {width}% for {w} of {}",
                s.total
            );
        }
    }
}

#[test]
fn run_options_set_the_profiles_and_rates() {
    let heap = build("heap_sites");
    let dir = out_dir("cli-options");
    let out = rprof()
        .args([
            "run",
            "--profiles",
            "cpu,heap",
            "--cpu-hz",
            "250",
            "--heap-rate",
            "4096",
            "-o",
        ])
        .arg(dir.join("p"))
        .arg("--")
        .arg(&heap)
        .arg("64")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = files_in(&dir);
    assert_eq!(files.len(), 3, "cpu, heap and heap-peak: {files:?}");
    assert_eq!(
        load(&files_of(&dir, "cpu")[0]).period,
        4_000_000,
        "1e9 / 250 Hz"
    );
    assert_eq!(load(&files_of(&dir, "heap")[0]).period, 4096);

    let contention = build("contention");
    let dir = out_dir("cli-options-locks");
    let out = rprof()
        .args(["run", "--block-rate", "0", "--mutex-fraction", "1", "-o"])
        .arg(dir.join("p"))
        .arg("--")
        .arg(&contention)
        .arg("mutex")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let waited: i64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("wait_ns=")?.parse().ok())
        .unwrap();
    assert!(
        files_of(&dir, "block").is_empty(),
        "block rate 0: no block file"
    );
    let m = summarize(&load(&files_of(&dir, "mutex")[0]), "delay");
    // Every contention recorded (fraction 1), so the total is what the waiter waited.
    assert_within(
        "mutex delay at fraction 1",
        m.cum("holder_section"),
        waited,
        0.10,
    );
}

#[test]
fn run_uses_rprof_lib() {
    let dir = out_dir("cli-lib");
    let copy = dir.join("other-librprof.so");
    std::fs::copy(lib(), &copy).unwrap();
    // The shell itself is the preloaded process: it finds the copy in its own mappings.
    let out = rprof()
        .env("RPROF_LIB", &copy)
        .args(["run", "-o"])
        .arg(dir.join("p"))
        .args(["--", "sh", "-c", "grep -c other-librprof.so /proc/$$/maps"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let count: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(count > 0);

    let marker = dir.join("ran");
    let out = rprof()
        .env("RPROF_LIB", "/nonexistent/librprof.so")
        .args(["run", "--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("rprof: ") && stderr.contains("RPROF_LIB=/nonexistent/librprof.so"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the program is not run");
}

#[test]
fn run_forwards_sigint() {
    let dir = out_dir("cli-sigint");
    let (mut child, _out) = run_long_running(&dir);
    kill(child.id(), "INT");
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(2),
        "rprof dies of the program's SIGINT"
    );
    let cpu = files_of(&dir, "cpu");
    assert_eq!(cpu.len(), 1, "the final files are written: {cpu:?}");
    assert!(summarize(&load(&cpu[0]), "cpu").cum("loop_burn") > 0);
}

/// Inlined functions carry pprof's `(inline)` label in `rprof top`, as in `go tool pprof`.
#[test]
fn top_labels_inlined_functions_as_pprof() {
    let prog = build("inline_burn");
    let r = run("cli-inline", &prog, &[], &[("RPROF_CPU_HZ", "250")]);
    assert!(r.output.status.success());
    let file = r.files_of("cpu")[0].clone();
    let out = rprof().arg("top").arg(&file).output().unwrap();
    assert!(out.status.success());
    let rows = table(&String::from_utf8_lossy(&out.stdout));
    assert!(
        rows.iter().any(|r| r.ends_with(" inlined_inner (inline)")),
        "{rows:?}"
    );
    if let Some(go) = go_pprof_top(&file, &[]) {
        assert_eq!(rows, table(&go));
    }
}

/// The report line of `pid` in `rprof run`'s stderr, if any.
fn report_line<'a>(stderr: &'a str, pid: &str) -> Option<&'a str> {
    stderr
        .lines()
        .find(|l| l.starts_with(&format!("rprof: {pid} ")))
}

/// The pids of the files in `dir`.
fn pids_in(dir: &Path) -> std::collections::BTreeSet<String> {
    files_in(dir)
        .iter()
        .map(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .split('.')
                .nth(1)
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// A shell script that runs many short helpers, then its real work: files come only from
/// processes that recorded something, each has its report line, and the others are counted
/// in one line; with --only, only the matching program leaves files.
#[test]
fn run_reports_the_processes_that_recorded_something() {
    let prog = build("cpu_split");
    let dir = out_dir("cli-many");
    let script = dir.join("work.sh");
    std::fs::write(
        &script,
        format!(
            "for i in 1 2 3 4 5 6 7 8; do echo $i | sed s/1/x/ | cut -c1 >/dev/null; true; done\n{} 300\n",
            prog.display()
        ),
    )
    .unwrap();
    let out = rprof()
        .args(["run", "-o"])
        .arg(dir.join("p"))
        .arg("sh")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pids = pids_in(&dir);
    for pid in &pids {
        let line =
            report_line(&stderr, pid).unwrap_or_else(|| panic!("no line for {pid}: {stderr}"));
        // Recorded something: some count is not 0.
        let counts: Vec<u64> = line
            .split(": ")
            .nth(1)
            .unwrap()
            .split([',', ' '])
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(counts.iter().any(|&n| n > 0), "{line}");
    }
    let work = stderr
        .lines()
        .find(|l| l.contains(" cpu_split: "))
        .unwrap_or_else(|| panic!("no cpu_split line: {stderr}"));
    assert!(work.starts_with("rprof: "), "{work}");
    // 8 × (sh subshells, sed, cut) and more: most record nothing, and are counted.
    let others = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("rprof: ")?
                .strip_suffix(" other processes recorded nothing (no files)")
        })
        .unwrap_or_else(|| panic!("no count of the others: {stderr}"));
    assert!(others.parse::<u32>().unwrap() >= 8, "{stderr}");
    assert!(pids.len() < 8, "{pids:?}");

    let dir = out_dir("cli-only");
    let out = rprof()
        .args(["run", "--only", "cpu_*", "-o"])
        .arg(dir.join("p"))
        .arg("sh")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pids = pids_in(&dir);
    assert_eq!(pids.len(), 1, "{pids:?}: {stderr}");
    let pid = pids.iter().next().unwrap();
    assert!(
        report_line(&stderr, pid).unwrap().contains(" cpu_split: "),
        "{stderr}"
    );
    let dormant = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("rprof: ")?
                .strip_suffix(" processes did not match --only (RPROF_PROGRAMS): not profiled")
        })
        .unwrap_or_else(|| panic!("no count of the dormant: {stderr}"));
    assert!(dormant.parse::<u32>().unwrap() >= 17, "{stderr}");
    assert!(!stderr.contains("recorded nothing"), "{stderr}");
}

/// Bad options, an unwritable prefix and a statically linked program are refused before
/// anything runs: one rprof: line, a non-zero exit, the program not started.
#[test]
fn run_refuses_what_cannot_work_before_running() {
    let dir = out_dir("cli-refuse");
    let touch = build("touch_file");
    let static_touch = dir.join("touch_static");
    let built = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&static_touch)
        .arg(root().join("c_tests/touch_file.c"))
        .status()
        .unwrap();
    assert!(built.success(), "cc -static (libc6-dev's libc.a) is needed");
    let marker = dir.join("ran");
    let cases: Vec<(Vec<String>, &Path, &str)> = vec![
        (
            vec!["-o".into(), dir.join("nodir/x").display().to_string()],
            &touch,
            "is not a directory",
        ),
        (
            vec!["--cpu-hz".into(), "0".into()],
            &touch,
            "--cpu-hz: RPROF_CPU_HZ=\"0\"",
        ),
        (
            vec!["--profiles".into(), "cpu,foo".into()],
            &touch,
            "unknown profile foo",
        ),
        (
            vec!["--heap-rate".into(), "lots".into()],
            &touch,
            "--heap-rate: RPROF_HEAP_RATE",
        ),
        (
            vec!["--only".into(), "ab[c".into()],
            &touch,
            "--only: RPROF_PROGRAMS",
        ),
        (
            vec!["--frobnicate".into()],
            &touch,
            "unknown option --frobnicate",
        ),
        (vec![], &static_touch, "is statically linked"),
    ];
    for (opts, prog, expect) in cases {
        let out = rprof()
            .current_dir(&dir)
            .arg("run")
            .args(&opts)
            .arg(prog)
            .arg(&marker)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{opts:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{opts:?}: {stderr}");
        assert!(
            stderr.starts_with("rprof: ") && stderr.contains(expect),
            "{opts:?}: {stderr}"
        );
        assert!(out.stdout.is_empty());
        assert!(!marker.exists(), "{opts:?}: the program ran");
    }
    // The same program, dynamically linked and without `--`, runs.
    let out = rprof()
        .current_dir(&dir)
        .arg("run")
        .arg(&touch)
        .arg(&marker)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker.exists());
}

/// Every subcommand answers --help with its usage on stdout.
#[test]
fn every_command_has_help() {
    for cmd in ["run", "top", "flame", "inspect", "diff"] {
        let out = rprof().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with(&format!("usage: rprof {cmd} ")),
            "{cmd}: {text}"
        );
        assert!(out.stderr.is_empty());
    }
    let out = rprof().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("rprof run --help"));
}

/// `rprof top SNAPSHOT EXIT` merges them as `go tool pprof -top SNAPSHOT EXIT` does.
#[test]
fn top_of_several_files_matches_go_pprof() {
    let dir = out_dir("cli-merge");
    let (mut child, _out) = run_long_running(&dir);
    kill(child.id(), "USR2");
    wait_for_snapshot(&dir);
    std::thread::sleep(std::time::Duration::from_millis(300));
    kill(child.id(), "TERM");
    child.wait().unwrap();
    let files = files_of(&dir, "cpu");
    assert_eq!(files.len(), 2, "{files:?}");
    let out = rprof().arg("top").args(&files).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let each: i64 = files.iter().map(|f| summarize(&load(f), "cpu").total).sum();
    assert!(text.contains("loop_burn"), "{text}");
    let paths: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    if let Some(go) = go_pprof_top_files(&paths, &[]) {
        assert_eq!(table(&text), table(&go), "rprof:\n{text}\ngo:\n{go}");
        // The header as pprof's: the durations summed, the total of both.
        let header = |t: &str| {
            t.lines()
                .find(|l| l.starts_with("Duration:"))
                .map(str::to_owned)
        };
        assert_eq!(header(&text), header(&go));
    }
    assert!(each > 0);
    // Profiles of two kinds do not merge.
    let heap = files_of(&dir, "heap");
    let out = rprof()
        .arg("top")
        .arg(&files[0])
        .arg(&heap[0])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only profiles of one kind merge"));
}

/// Code without symbols is one row per object, `[name]`, as go tool pprof groups it.
#[test]
fn unsymbolized_code_is_grouped_per_object() {
    let prog = build("cpu_split");
    let dir = out_dir("cli-stripped");
    let stripped = dir.join("cpu_split_stripped");
    std::fs::copy(&prog, &stripped).unwrap();
    assert!(Command::new("strip")
        .arg(&stripped)
        .status()
        .unwrap()
        .success());
    let out = rprof()
        .args(["run", "--cpu-hz", "500", "-o"])
        .arg(dir.join("p"))
        .arg(&stripped)
        .arg("300")
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = files_of(&dir, "cpu")[0].clone();
    let out = rprof().arg("top").arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = table(&text);
    assert!(
        rows.iter().any(|r| r.ends_with(" [cpu_split_stripped]")),
        "{text}"
    );
    assert!(!rows.iter().any(|r| r.contains(" 0x")), "{text}");
    if let Some(go) = go_pprof_top(&file, &[]) {
        assert_eq!(rows, table(&go), "rprof:\n{text}\ngo:\n{go}");
    }
}

/// A heap freed by exit: `rprof top` says which view has data and where the peak is;
/// `rprof flame` fails with the same words; `rprof inspect` of the peak file says when and
/// how large.
#[test]
fn an_empty_view_says_where_the_data_is() {
    let prog = build("heap_peak");
    let dir = out_dir("cli-empty-view");
    let out = rprof()
        .arg("run")
        .arg("-o")
        .arg(dir.join("p"))
        .arg(&prog)
        .output()
        .unwrap();
    assert!(out.status.success());
    let heap = files_of(&dir, "heap") // ".heap." is not ".heap-peak."
        .into_iter()
        .next()
        .unwrap();
    let peak = heap.to_string_lossy().replace(".heap.", ".heap-peak.");
    let out = rprof().arg("top").arg(&heap).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the inuse_space view is empty; alloc_objects, alloc_space have data")
            && stderr.contains("(--sample-index alloc_space)")
            && stderr.contains(&format!("in use at the peak is in {peak}")),
        "{stderr}"
    );
    let out = rprof().arg("flame").arg(&heap).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the inuse_space view is empty"));
    let out = rprof().arg("inspect").arg(&peak).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("heap peak: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("MB in use at 20") && line.ends_with(" s after the start"),
        "{line}"
    );
}

/// `rprof top -n K` shows the K largest rows with percentages of the whole profile (not
/// of the rows shown), as `go tool pprof -top -nodecount=K` does, for every sample index
/// of a heap profile with many flat functions.
#[test]
fn top_n_percentages_are_of_the_whole_profile() {
    let heap = build("heap_sites");
    let dir = out_dir("cli-top-n");
    let out = command(&heap, &["64"], &[("RPROF_HEAP_RATE", "1")], &dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = files_of(&dir, "heap") // ".heap." is not ".heap-peak."
        .into_iter()
        .next()
        .unwrap();
    let p = load(&file);
    for index in [
        "alloc_objects",
        "alloc_space",
        "inuse_objects",
        "inuse_space",
    ] {
        let total = summarize(&p, index).total;
        let (locs, funcs) = (p.location_by_id(), p.function_by_id());
        let idx = p.sample_type_index(index).unwrap();
        let mut flat: HashMap<String, i64> = HashMap::new();
        for s in &p.sample {
            let leaf = p.frames(s, &locs, &funcs)[0].function.to_owned();
            *flat.entry(leaf).or_default() += s.value[idx];
        }
        for k in ["3", "5"] {
            let out = rprof()
                .arg("top")
                .arg(&file)
                .args(["-n", k, "--sample-index", index])
                .output()
                .unwrap();
            assert!(out.status.success());
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let rows = table(&text);
            assert_eq!(rows.len(), 1 + k.parse::<usize>().unwrap(), "{text}");
            for r in &rows[1..] {
                let name = r.rsplit(' ').next().unwrap();
                let want = flat.get(name).copied().unwrap_or(0) as f64 * 100.0 / total as f64;
                let shown: f64 = r
                    .split(' ')
                    .nth(1)
                    .unwrap()
                    .trim_end_matches('%')
                    .parse()
                    .unwrap();
                assert!(
                    (shown - want).abs() <= 0.0051,
                    "{index} -n {k}: {r} should show {want:.4}%:\n{text}"
                );
            }
            if let Some(go) = go_pprof_top(
                &file,
                &[
                    &format!("-nodecount={k}"),
                    &format!("-sample_index={index}"),
                ],
            ) {
                assert_eq!(
                    rows,
                    table(&go),
                    "{index} -n {k}:\n{text}\ngo tool pprof:\n{go}"
                );
                let showing = |t: &str| {
                    t.lines()
                        .find(|l| l.starts_with("Showing nodes accounting for"))
                        .map(str::to_owned)
                };
                assert_eq!(showing(&text), showing(&go), "{index} -n {k}");
            }
        }
    }
}

/// A worker that drops privileges (nginx's run as nobody) and points fd 2 at its log
/// cannot write in the root-owned output directory: its files go to $TMPDIR instead, and
/// `rprof run`'s report names them there (its line reaches the run's ledger through the
/// descriptor kept from load). Its log gets no rprof line. Needs root; skipped otherwise.
#[test]
fn a_worker_that_drops_privileges_says_where_its_files_went() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to drop privileges");
        return;
    }
    let prog = build("drop_privileges");
    let dir = out_dir("cli-privileges");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fallback = std::env::temp_dir().join(format!("rprof-fallback-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fallback);
    std::fs::create_dir(&fallback).unwrap();
    std::fs::set_permissions(&fallback, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let log = dir.join("worker.log");
    let out = rprof()
        .env("TMPDIR", &fallback)
        .env("RPROF_HEAP_RATE", "1")
        .args(["run", "-o"])
        .arg(dir.join("p"))
        .arg("--")
        .arg(&prog)
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let worker: u32 = stdout
        .trim()
        .strip_prefix("worker=")
        .unwrap()
        .parse()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pattern = format!("{}/p.{worker}.*.pb.gz", fallback.display());
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("rprof: {worker} ")) && l.ends_with(&pattern)),
        "no report line naming {pattern}:\n{stderr}"
    );
    // The files hold what the worker did. (Not by name: a worker running as nobody may
    // not read the program's file to name its functions, here under a private directory.)
    let cpu = load(&fallback.join(format!("p.{worker}.cpu.pb.gz")));
    assert!(summarize(&cpu, "cpu").total > 0);
    let heap = load(&fallback.join(format!("p.{worker}.heap.pb.gz")));
    assert!(summarize(&heap, "inuse_space").total >= 4 << 20);
    assert!(files_of(&dir, "cpu")
        .iter()
        .all(|f| !f.to_string_lossy().contains(&worker.to_string())));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "",
        "the worker's log"
    );
    let _ = std::fs::remove_dir_all(&fallback);
}

/// `rprof --version`, `rprof lib` (the library `rprof run` preloads, for
/// `LD_PRELOAD=$(rprof lib)`), and the version each profile carries, shown by inspect.
#[test]
fn version_and_library_path() {
    let v = rprof().arg("--version").output().unwrap();
    assert!(v.status.success());
    let version = format!("rprof {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), version);
    let l = rprof().arg("lib").env_remove("RPROF_LIB").output().unwrap();
    assert!(l.status.success(), "{}", String::from_utf8_lossy(&l.stderr));
    let path = String::from_utf8_lossy(&l.stdout).trim().to_string();
    assert!(
        path.ends_with("librprof.so") && std::path::Path::new(&path).is_file(),
        "{path}"
    );
    let r = run("version-comment", &build("cpu_split"), &["50"], &[]);
    let cpu = r.files_of("cpu");
    let p = load(&cpu[0]);
    assert!(
        p.comments().contains(&version.as_str()),
        "{:?}",
        p.comments()
    );
    let shown = rprof().arg("inspect").arg(&cpu[0]).output().unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains(&version));
}

/// `cargo install --path crates/cli` alone gives an `rprof` that carries its library: run
/// from another directory, with nothing of the checkout in its environment, it profiles a
/// program; `rprof lib` names the copy it wrote to the per-user cache.
#[test]
fn cargo_install_alone_gives_a_working_rprof() {
    let install_root = out_dir("cargo-install-root");
    let elsewhere = out_dir("cargo-install-elsewhere");
    let cache = elsewhere.join("cache");
    // Kept between runs, so that a second run builds only what changed.
    let target = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("install-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["install", "--quiet", "--locked", "--debug", "--path"])
        .arg(root().join("crates/cli"))
        .arg("--root")
        .arg(&install_root)
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RPROF_EMBED")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "cargo install: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let rprof = install_root.join("bin/rprof");
    let prog = build("cpu_split");
    let command = |args: &[&str]| {
        let mut c = Command::new(&rprof);
        c.args(args)
            .current_dir(&elsewhere)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &elsewhere)
            .env("XDG_CACHE_HOME", &cache);
        c.output().unwrap()
    };
    let lib = command(&["lib"]);
    assert!(
        lib.status.success(),
        "{}",
        String::from_utf8_lossy(&lib.stderr)
    );
    let lib = String::from_utf8_lossy(&lib.stdout).trim().to_string();
    assert!(lib.starts_with(cache.to_str().unwrap()), "{lib}");
    let r = command(&["run", "-o", "p", "--", prog.to_str().unwrap(), "100"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let cpu = files_of(&elsewhere, "cpu");
    assert_eq!(cpu.len(), 1, "{:?}", files_in(&elsewhere));
    let s = summarize(&load(&cpu[0]), "cpu");
    assert!(s.cum("burn_three") > 0, "{:?}", s.functions());
}
