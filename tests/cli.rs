//! The `rprof` command on profiles the library writes.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use common::*;

fn rprof() -> Command {
    let bin = root().join("target/release/rprof");
    assert!(bin.exists(), "build with `cargo build --release` first");
    Command::new(bin)
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
    let status = rprof()
        .args(["run", "--", "sh", "-c", "exit 7"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
    let status = rprof()
        .args(["run", "--", "sh", "-c", "kill -TERM $$"])
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
