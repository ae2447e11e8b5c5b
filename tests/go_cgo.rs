//! A Go program with cgo (c_tests/go_cgo.go, built with Debian's golang-go where it is
//! installed): C code keeps 2048 blocks of 64 KiB (128 MiB) from c_alloc_site, called by
//! main.goCaller; Go keeps 32 MiB in main.goAlloc; C burns 400 ms of CPU in c_burn, called
//! by main.goBurn. Go's own heap profile sees only the Go bytes; rprof's sees the C bytes
//! with the Go callers on their stacks, over HTTP, on the dump signal and on SIGTERM, even
//! though Go's runtime installs a handler for every signal.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use rprof_profile::Profile;

const MIB: i64 = 1 << 20;
const C_BYTES: f64 = 2048.0 * 65536.0;

/// Five standard deviations of the estimate of 2048 blocks of 64 KiB at the default rate.
fn five_sigma() -> f64 {
    let (rate, size, count) = (524_288.0f64, 65536.0f64, 2048.0f64);
    let p = 1.0 - (-size / rate).exp();
    5.0 * size * (count * (1.0 - p) / p).sqrt()
}

/// The functions of the sample stacks whose leaf is `leaf`, outermost last (one list per
/// sample), and the sum of value `index` over those samples.
fn stacks_of(p: &Profile, leaf: &str, index: &str) -> (Vec<Vec<String>>, i64) {
    let idx = p.sample_type_index(index).expect(index);
    let (locs, funcs) = (p.location_by_id(), p.function_by_id());
    let mut stacks = Vec::new();
    let mut total = 0;
    for s in &p.sample {
        let frames: Vec<String> = p
            .frames(s, &locs, &funcs)
            .iter()
            .map(|f| f.function.to_string())
            .collect();
        if frames.first().is_some_and(|f| f == leaf) {
            total += s.value[idx];
            stacks.push(frames);
        }
    }
    (stacks, total)
}

/// `stack` holds `expected` in this order (other frames may come between).
fn in_order(stack: &[String], expected: &[&str]) -> bool {
    let mut it = stack.iter();
    expected
        .iter()
        .all(|e| it.any(|f| f == e || f.strip_suffix(".abi0") == Some(e)))
}

/// The C site in a heap profile: in-use bytes within sampling bounds of 128 MiB, every
/// stack going from c_alloc_site through the cgo call to the Go function that made it.
fn check_c_site(what: &str, p: &Profile) {
    let (stacks, inuse) = stacks_of(p, "c_alloc_site", "inuse_space");
    assert!(
        (inuse as f64 - C_BYTES).abs() <= five_sigma(),
        "{what}: c_alloc_site holds {inuse} bytes in use, expected {C_BYTES} ± {:.0}",
        five_sigma()
    );
    let expected = [
        "c_alloc_site",
        "runtime.asmcgocall",
        "runtime.cgocall",
        "main.goCaller",
        "main.main",
        "runtime.main",
        "runtime.goexit",
    ];
    for s in &stacks {
        assert!(in_order(s, &expected), "{what}: stack {s:?}");
    }
}

/// Reads the program's stdout up to its "ready" line (its allocations and burn are done).
fn wait_ready(child: &mut Child) -> BufReader<std::process::ChildStdout> {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    out
}

fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} never came",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Written to a temporary name and linked: complete once it is there.
}

fn http_get(addr: &str, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out[..split])
    );
    out[split + 4..].to_vec()
}

/// Over HTTP while it runs, on the dump signal (it keeps running), and on SIGTERM at its
/// default action (it dies of it, as without rprof): the C bytes with their Go callers.
/// The program's own heap profile, written with runtime/pprof, has the Go bytes only.
#[test]
fn c_memory_of_a_go_program_with_its_go_callers() {
    let Some(prog) = build_go("go_cgo") else {
        return;
    };
    let dir = out_dir("go-cgo");
    let go_heap = dir.join("go-own.heap.pb.gz");
    let go_heap_env = go_heap.to_string_lossy().into_owned();
    let mut child = spawn(
        &prog,
        &["wait"],
        &[
            ("RPROF_HTTP", "127.0.0.1:0"),
            ("GO_HEAP_PROFILE", &go_heap_env),
        ],
        &dir,
    );
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = served_address(&line);
    let _out = wait_ready(&mut child);

    let served = rprof_profile::decode(&http_get(&addr, "/debug/pprof/heap")).unwrap();
    check_c_site("over HTTP", &served);

    let pid = pid_of(&child);
    kill(pid, "USR2");
    wait_for_file(&dir.join(format!("rprof.{pid}.heap.1.pb.gz")));
    check_c_site(
        "snapshot",
        &load(&dir.join(format!("rprof.{pid}.heap.1.pb.gz"))),
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the dump signal ended it"
    );

    kill(pid, "TERM");
    let status = child.wait().unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{rest}");
    assert!(!rest.contains("no longer writes rprof snapshots"), "{rest}");

    let heap = load(&dir.join(format!("rprof.{pid}.heap.pb.gz")));
    check_c_site("at SIGTERM", &heap);
    assert!(statistic(&heap, "Mallocs") >= 2048);
    assert!(statistic(&heap, "TotalAlloc") >= 2048 * 65536);

    // CPU in C, called from Go: 400 ms of the thread's CPU time in c_burn under goBurn.
    let cpu = load(&dir.join(format!("rprof.{pid}.cpu.1.pb.gz")));
    let (stacks, burn_ns) = stacks_of(&cpu, "c_burn", "cpu");
    assert_within("c_burn CPU", burn_ns, 400_000_000, 0.5);
    for s in &stacks {
        assert!(
            in_order(
                s,
                &["c_burn", "runtime.cgocall", "main.goBurn", "main.main"]
            ),
            "{s:?}"
        );
    }

    // Go's own view: the Go bytes are there, the C bytes are not.
    let own = load(&go_heap);
    let s = summarize(&own, "inuse_space");
    assert!(s.cum("main.goAlloc") >= 16 * MIB, "{:?}", s.cum);
    assert_eq!(s.cum("c_alloc_site"), 0);
    assert!(
        s.total < 64 * MIB,
        "Go's heap profile: {} bytes in use",
        s.total
    );
}

/// A Go program that catches SIGUSR2 and SIGTERM itself (os/signal) still gets them, and
/// rprof still writes: a snapshot on SIGUSR2, the final files on SIGTERM before the
/// program acts on it and returns from main (a raw exit_group, after which nothing runs).
#[test]
fn go_program_that_catches_the_signals_gets_them_and_files_are_written() {
    let Some(prog) = build_go("go_cgo") else {
        return;
    };
    let dir = out_dir("go-cgo-notify");
    let mut child = spawn(&prog, &["notify"], &[], &dir);
    let mut out = wait_ready(&mut child);
    let pid = pid_of(&child);
    kill(pid, "USR2");
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "caught user defined signal 2\n");
    wait_for_file(&dir.join(format!("rprof.{pid}.heap.1.pb.gz")));
    kill(pid, "TERM");
    let result = child.wait_with_output().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "caught terminated\n");
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    check_c_site(
        "caught SIGTERM",
        &load(&dir.join(format!("rprof.{pid}.heap.pb.gz"))),
    );
}

/// At a normal exit Go's runtime calls exit_group itself: no files, and one line at load
/// says so and what to use instead. The program's output and status are its own.
#[test]
fn go_program_exit_says_where_files_come_from() {
    let Some(prog) = build_go("go_cgo") else {
        return;
    };
    let r = run("go-cgo-exit", &prog, &["exit"], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "ready\n");
    assert!(r.files().is_empty(), "{:?}", r.files());
    let w = r.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("no files are written at its normal exit"),
        "{w:?}"
    );
    assert!(w[0].contains("SIGTERM"), "{w:?}");
}
