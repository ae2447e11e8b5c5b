//! The `rprof` command on profiles the library writes.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use common::*;

fn rprof() -> Command {
    let bin = release_dir().join("rprof");
    assert!(bin.exists(), "build with `cargo build --release` first");
    let mut cmd = Command::new(bin);
    clear_rprof_env(&mut cmd);
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
    assert!(
        stderr.contains(&format!("rprof: wrote {}", files[0].display())),
        "{stderr}"
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
    let a = run("cli-a", &prog, &["400"], &[]);
    let b = run("cli-b", &prog, &["800"], &[]);
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

#[test]
fn diff_matches_go_pprof_diff_base() {
    let (a, b, _) = two_runs();
    let out = rprof().arg("diff").arg(&a).arg(&b).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let ours = table(&text);
    // 800 units minus 400 units: all the growth is in spin, under burn_three and burn_one.
    assert!(ours[1].ends_with(" spin"), "{text}");
    if let Some(go) = go_pprof_top(&b, &[&format!("-diff_base={}", a.display())]) {
        assert_eq!(ours, table(&go), "rprof diff:\n{text}\ngo:\n{go}");
    }
}

#[test]
fn run_forwards_the_dump_signal_and_termination() {
    let prog = build("long_running");
    let dir = out_dir("cli-forward");
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
    kill(child.id(), "USR2");
    for _ in 0..100 {
        if files_of(&dir, "cpu")
            .iter()
            .any(|f| f.to_string_lossy().contains(".cpu.1."))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
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
