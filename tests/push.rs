//! Pushing profiles to a backend, checked by the suite's receiver (tests/push/receiver.py),
//! which decodes with definitions independent of rprof's encoder: Pyroscope's published
//! push.proto through Google's protobuf runtime, OTLP with PyPI's opentelemetry-proto, and
//! the embedded pprof with `go tool pprof -raw`. No real Pyroscope, Parca or collector runs
//! here. Also the continuous files (`RPROF_PERIOD`, `RPROF_KEEP`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The bound on how long exit waits for the last push (`consumers::push::EXIT_BOUND`).
const EXIT_BOUND: Duration = Duration::from_secs(2);

/// Where the receiver's Python packages are (`scripts/test.sh` installs them there).
fn python_path() -> Option<PathBuf> {
    let dir = std::env::var_os("RPROF_TEST_PYTHONPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/test-tools/py"));
    let ok = Command::new("python3")
        .args(["-c", "import grpc_tools.protoc, opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2"])
        .env("PYTHONPATH", &dir)
        .output()
        .is_ok_and(|o| o.status.success());
    have_tool(
        "python3 with opentelemetry-proto and grpcio-tools",
        ok,
        "them with scripts/test.sh (pip install --target target/test-tools/py)",
    )
    .then_some(dir)
}

struct Receiver {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Receiver {
    fn start(dir: &Path, args: &[&str]) -> Option<Receiver> {
        let py = python_path()?;
        let mut child = Command::new("python3")
            .arg(root().join("tests/push/receiver.py"))
            .arg(dir)
            .args(args)
            .env("PYTHONPATH", py)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("port=")
            .unwrap_or_else(|| panic!("the receiver said {line:?}"))
            .parse()
            .unwrap();
        Some(Receiver {
            child,
            port,
            dir: dir.to_path_buf(),
        })
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Every request received, in order.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn accepted(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["status"] == 200)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pprof files of the Pyroscope series named `name` in `requests`.
fn series_files(requests: &[Value], name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for r in requests {
        for s in r["pyroscope"].as_array().unwrap() {
            if s["labels"]["__name__"] == name {
                for f in s["samples"].as_array().unwrap() {
                    out.push(PathBuf::from(f["file"].as_str().unwrap()));
                }
            }
        }
    }
    out
}

/// The sum of sample type `ty` over `files`, as `go tool pprof -raw` reads them (merged).
fn go_raw_total(files: &[PathBuf], ty: &str) -> Option<i64> {
    if !have_go() {
        return None;
    }
    let out = Command::new("go")
        .args(["tool", "pprof", "-raw"])
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go tool pprof -raw: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().skip_while(|l| !l.starts_with("Samples:"));
    lines.next();
    let header = lines.next().expect("a sample types line");
    let index = header
        .split_whitespace()
        .position(|t| t.split('/').next() == Some(ty))
        .unwrap_or_else(|| panic!("no {ty} in {header}"));
    let mut total = 0;
    for l in lines.take_while(|l| !l.starts_with("Locations")) {
        let Some((values, _)) = l.split_once(':') else {
            continue;
        };
        let v: Vec<i64> = values
            .split_whitespace()
            .map_while(|t| t.parse().ok())
            .collect();
        if v.len() == header.split_whitespace().count() {
            total += v[index];
        }
    }
    Some(total)
}

/// Totals of OTLP profiles of sample type `ty` over `requests`.
fn otlp_total(requests: &[Value], ty: &str) -> i64 {
    requests
        .iter()
        .flat_map(|r| r["otlp"].as_array().unwrap().iter())
        .filter(|p| p["sample_type"] == ty)
        .map(|p| p["total"].as_i64().unwrap())
        .sum()
}

fn push_load() -> PathBuf {
    build("push_load")
}

/// Pyroscope's Push API: 1-second windows of cpu and memory whose sums are what the
/// program used and allocated, with the labels and headers asked for.
#[test]
fn pyroscope_windows_sum_to_what_the_program_did() {
    let dir = out_dir("push-pyroscope");
    let Some(rx) = Receiver::start(&dir, &[]) else {
        return;
    };
    let r = run(
        "push-pyroscope-run",
        &push_load(),
        &["4"],
        &[
            ("RPROF_PUSH", &rx.url("http")),
            ("RPROF_PUSH_PERIOD", "1"),
            ("RPROF_SERVICE_NAME", "checkout"),
            ("RPROF_LABELS", "env=test,team=core"),
            ("RPROF_PUSH_TOKEN", "sekrit-token"),
            ("RPROF_PUSH_TENANT", "tenant-1"),
        ],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "push_load done 0\n");
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    assert!(!r.stderr().contains("sekrit"), "the token was printed");
    let got = rx.accepted();
    assert!(got.len() >= 4, "{} pushes in 4 s at 1 s", got.len());
    let pid = r.pid();
    for req in &got {
        assert_eq!(req["path"], "/push.v1.PusherService/Push");
        let h = &req["headers"];
        assert_eq!(h["Content-Type"], "application/proto");
        assert_eq!(h["Content-Encoding"], "gzip");
        assert_eq!(h["Authorization"], "Bearer sekrit-token");
        assert_eq!(h["X-Scope-OrgID"], "tenant-1");
        let names: Vec<&str> = req["pyroscope"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let l = &s["labels"];
                assert_eq!(l["service_name"], "checkout");
                assert_eq!(l["env"], "test");
                assert_eq!(l["team"], "core");
                assert_eq!(l["pid"], pid.to_string());
                assert!(l["host"].as_str().is_some_and(|h| !h.is_empty()));
                l["__name__"].as_str().unwrap()
            })
            .collect();
        assert_eq!(names, ["process_cpu", "memory", "block", "mutex"]);
    }
    let cpu = series_files(&got, "process_cpu");
    let Some(cpu_ns) = go_raw_total(&cpu, "cpu") else {
        return;
    };
    // At 100 Hz, 4 s of CPU is about 400 samples: 10 % is over 3 standard errors.
    assert_within("CPU summed over the pushes", cpu_ns, r.cpu_ns(), 0.10);
    let mem = series_files(&got, "memory");
    let alloc = go_raw_total(&mem, "alloc_space").unwrap();
    // About 3 GB at one sample per 512 KiB: thousands of samples, a few % of error.
    assert_within(
        "alloc_space summed over the pushes",
        alloc,
        r.printed("alloc_bytes"),
        0.10,
    );
    // In-use space is as it stands in each window: the last one holds what is live at the
    // end (a quarter of the blocks, kept to the end), not a change.
    let last_mem = [mem.last().unwrap().clone()];
    let inuse = go_raw_total(&last_mem, "inuse_space").unwrap();
    assert_within(
        "in-use space in the last window",
        inuse,
        r.printed("alloc_bytes") / 4,
        0.25,
    );
}

/// OpenTelemetry profiles over OTLP/HTTP, decoded with opentelemetry-proto.
#[test]
fn otlp_windows_decode_and_sum_to_what_the_program_did() {
    let dir = out_dir("push-otlp");
    let Some(rx) = Receiver::start(&dir, &[]) else {
        return;
    };
    let r = run(
        "push-otlp-run",
        &push_load(),
        &["3"],
        &[
            (
                "RPROF_PUSH",
                &format!("otlp+http://alice:pa%3Ass@127.0.0.1:{}", rx.port),
            ),
            ("RPROF_PUSH_PERIOD", "1"),
            ("RPROF_LABELS", "env=test"),
            ("RPROF_PROFILES", "cpu,heap,wall"),
        ],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    let got = rx.accepted();
    assert!(got.len() >= 3, "{} pushes", got.len());
    let first = &got[0]["otlp"][0];
    assert_eq!(got[0]["path"], "/v1development/profiles");
    // Basic authentication from the URL (alice:pa:ss, the colon %-escaped).
    assert_eq!(got[0]["headers"]["Authorization"], "Basic YWxpY2U6cGE6c3M=");
    assert_eq!(got[0]["headers"]["Content-Type"], "application/x-protobuf");
    assert!(!r.stderr().contains("pa:ss") && !r.stderr().contains("pa%3Ass"));
    assert_eq!(first["resource"]["service.name"], "push_load");
    assert_eq!(first["resource"]["env"], "test");
    assert_eq!(first["resource"]["process.pid"], r.pid());
    assert_eq!(first["scope"][0], "rprof");
    let types: Vec<&str> = got[0]["otlp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sample_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "samples",
            "cpu",
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space",
            "samples",
            "wall"
        ]
    );
    assert_within(
        "CPU summed over the pushes",
        otlp_total(&got, "cpu"),
        r.cpu_ns(),
        0.10,
    );
    assert_within(
        "alloc_space summed over the pushes",
        otlp_total(&got, "alloc_space"),
        r.printed("alloc_bytes"),
        0.10,
    );
    // The work is where the program does it, and the samples carry their labels.
    let cpu_flat_spin: i64 = got
        .iter()
        .flat_map(|r| r["otlp"].as_array().unwrap().iter())
        .filter(|p| p["sample_type"] == "cpu")
        .map(|p| p["cum"]["burn"].as_i64().unwrap_or(0))
        .sum();
    assert!(
        cpu_flat_spin * 10 > otlp_total(&got, "cpu") * 8,
        "burn has under 80 % of the CPU"
    );
    let cpu = got[0]["otlp"][1].clone();
    assert_eq!(
        cpu["sample_labels"],
        serde_json::json!(["thread", "thread_id"])
    );
    assert_eq!(cpu["attributes"]["rprof.kind"], "cpu");
}

/// A backend that refuses the first three pushes loses nothing: the windows wait and go
/// when it answers; one line says it failed, one that it works again.
#[test]
fn refused_pushes_are_sent_later() {
    let dir = out_dir("push-refuse");
    let Some(rx) = Receiver::start(&dir, &["--refuse", "3"]) else {
        return;
    };
    let r = run(
        "push-refuse-run",
        &push_load(),
        &["3"],
        &[
            ("RPROF_PUSH", &rx.url("otlp+http")),
            ("RPROF_PUSH_PERIOD", "1"),
            ("RPROF_PROFILES", "cpu"),
        ],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    let refused = rx.requests().iter().filter(|q| q["status"] == 503).count();
    assert_eq!(refused, 3);
    let got = rx.accepted();
    assert_within(
        "CPU summed over the pushes",
        otlp_total(&got, "cpu"),
        r.cpu_ns(),
        0.10,
    );
    let w = r.warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("cannot push to") && w[0].contains("503"),
        "{w:?}"
    );
    assert!(w[1].contains("works again"), "{w:?}");
}

/// No backend at all: the program runs as without push, its files are written, and one
/// line says why nothing was pushed.
#[test]
fn no_backend_changes_nothing_but_one_line() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = run(
        "push-none",
        &push_load(),
        &["2"],
        &[
            ("RPROF_PUSH", &format!("http://127.0.0.1:{port}")),
            ("RPROF_PUSH_PERIOD", "1"),
        ],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "push_load done 0\n");
    let w = r.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("cannot push to") && w[0].contains(&port.to_string()),
        "{w:?}"
    );
    assert!(!r.files_of("cpu").is_empty() && !r.files_of("heap").is_empty());
}

/// A malformed RPROF_PUSH or label: one line naming it; the program runs on and its files
/// are written.
#[test]
fn malformed_values_are_said_once_and_files_written() {
    let r = run(
        "push-bad",
        &push_load(),
        &["0.3"],
        &[
            ("RPROF_PUSH", "localhost:4040"),
            ("RPROF_LABELS", "ok=1,bad"),
        ],
    );
    assert!(r.output.status.success());
    let w = r.warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("rprof: RPROF_PUSH=\"localhost:4040\"") && w[0].ends_with("using no push"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("rprof: RPROF_LABELS=") && w[1].contains("bad"),
        "{w:?}"
    );
    assert!(!r.files_of("cpu").is_empty());
}

/// A backend that takes the connection and never answers delays exit by no more than the
/// bound (and the program's own run is not slowed by the hung requests).
#[test]
fn a_hung_backend_delays_exit_by_at_most_the_bound() {
    let dir = out_dir("push-hang");
    let Some(rx) = Receiver::start(&dir, &["--hang"]) else {
        return;
    };
    let start = Instant::now();
    let r = run(
        "push-hang-run",
        &push_load(),
        &["1.5"],
        &[("RPROF_PUSH", &rx.url("http")), ("RPROF_PUSH_PERIOD", "1")],
    );
    let took = start.elapsed();
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(
        took < Duration::from_millis(1500) + EXIT_BOUND + Duration::from_millis(1500),
        "exit took {took:?} after 1.5 s of work (bound {EXIT_BOUND:?})"
    );
    assert!(!r.files_of("cpu").is_empty(), "the files were not written");
}

/// A fork child pushes its own windows, from the fork on, under its own pid.
#[test]
fn a_fork_child_pushes_its_own() {
    let dir = out_dir("push-fork");
    let Some(rx) = Receiver::start(&dir, &[]) else {
        return;
    };
    let r = run(
        "push-fork-run",
        &push_load(),
        &["2", "fork"],
        &[
            ("RPROF_PUSH", &rx.url("otlp+http")),
            ("RPROF_PUSH_PERIOD", "1"),
            ("RPROF_PROFILES", "cpu"),
        ],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    let mut by_pid: std::collections::BTreeMap<i64, i64> = Default::default();
    let mut windows: std::collections::BTreeMap<i64, usize> = Default::default();
    for q in rx.accepted() {
        for p in q["otlp"].as_array().unwrap() {
            if p["sample_type"] == "cpu" {
                *windows
                    .entry(p["resource"]["process.pid"].as_i64().unwrap())
                    .or_default() += 1;
                *by_pid
                    .entry(p["resource"]["process.pid"].as_i64().unwrap())
                    .or_default() += p["total"].as_i64().unwrap();
            }
        }
    }
    assert_eq!(by_pid.len(), 2, "{by_pid:?}");
    // Each pushes every period while it runs (2 s at 1 s), not only at its exit.
    assert!(
        windows.values().all(|&n| n >= 2),
        "windows by pid: {windows:?}"
    );
    // Each process's pushes hold its own CPU (the child's not in the parent's): about 200
    // samples each, 15 % is over 2 standard errors.
    let stderr = r.stderr();
    for l in stderr.lines().filter_map(|l| l.strip_prefix("pid_cpu=")) {
        let (pid, ns) = l.split_once(':').unwrap();
        let (pid, ns): (i64, i64) = (pid.parse().unwrap(), ns.parse().unwrap());
        let pushed = *by_pid
            .get(&pid)
            .unwrap_or_else(|| panic!("nothing from pid {pid}: {by_pid:?}"));
        assert_within(&format!("CPU pushed by pid {pid}"), pushed, ns, 0.15);
    }
}

/// SIGTERM: the last window is pushed before the process dies of it.
#[test]
fn sigterm_pushes_the_last_window() {
    let dir = out_dir("push-term");
    let Some(rx) = Receiver::start(&dir, &[]) else {
        return;
    };
    let run_dir = out_dir("push-term-run");
    let mut child = spawn(
        &push_load(),
        &["30"],
        &[
            ("RPROF_PUSH", &rx.url("otlp+http")),
            ("RPROF_PUSH_PERIOD", "60"),
            ("RPROF_PROFILES", "cpu"),
        ],
        &run_dir,
    );
    std::thread::sleep(Duration::from_millis(1500));
    kill(pid_of(&child), "TERM");
    let st = wait_at_most(&mut child, Duration::from_secs(10)).expect("SIGTERM did not end it");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGTERM));
    let got = rx.accepted();
    assert_eq!(got.len(), 1, "one window, at the signal");
    let cpu = otlp_total(&got, "cpu");
    assert!(
        (300_000_000..=1_800_000_000).contains(&cpu),
        "the last window holds {cpu} ns of CPU after 1.5 s"
    );
}

/// `RPROF_PERIOD`: each kind's window every period as numbered files; `RPROF_KEEP` keeps
/// the newest of them.
#[test]
fn periodic_files_keep_the_newest() {
    let r = run(
        "period",
        &push_load(),
        &["3.6"],
        &[
            ("RPROF_PERIOD", "1"),
            ("RPROF_KEEP", "2"),
            ("RPROF_PROFILES", "cpu"),
        ],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    let numbered: Vec<String> = r
        .files_of("cpu")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n.matches('.').count() == 5)
        .collect();
    let pid = r.pid();
    assert_eq!(
        numbered,
        [
            format!("rprof.{pid}.cpu.2.pb.gz"),
            format!("rprof.{pid}.cpu.3.pb.gz")
        ],
        "files: {:?}",
        r.files()
    );
    // Each covers about a second, and holds no more CPU than that.
    for n in &numbered {
        let p = load(&r.dir.join(n));
        let s = summarize(&p, "cpu");
        assert!(
            (700_000_000..=1_400_000_000).contains(&p.duration_nanos),
            "{n} covers {} ns",
            p.duration_nanos
        );
        assert!(
            s.total > 0 && s.total <= p.duration_nanos * 11 / 10,
            "{n} holds {} ns",
            s.total
        );
    }
}
