//! The profile server (RPROF_HTTP) on c_tests/http_server.c: named threads, one burning
//! CPU in burn_cpu, one that allocated in burst_before and allocates in burst_later on
//! SIGUSR1, two contending for a mutex in hold_lock.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use std::time::Duration;

use common::http_request as get;
use common::*;
use rprof_profile::Profile;

struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Kept open: a program writing to a closed pipe would die of SIGPIPE.
    stderr: BufReader<ChildStderr>,
    /// Past the program's "started" line, which `start_with` waits for.
    stdout: BufReader<ChildStdout>,
    addr: String,
    dir: std::path::PathBuf,
}

impl Server {
    fn start(tag: &str, http: &str) -> Server {
        Server::start_with(tag, http, &[])
    }

    fn start_with(tag: &str, http: &str, env: &[(&str, &str)]) -> Server {
        let prog = build("http_server");
        let dir = out_dir(tag);
        let mut all = vec![("RPROF_HTTP", http), ("RPROF_MUTEX_FRACTION", "1")];
        all.extend_from_slice(env);
        let mut child = spawn_piped(&prog, &[], &all, &dir);
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        let addr = served_address(&line);
        // The program has made its threads and run burst_before once it says "started":
        // requests before that could find its heap still empty.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut started = String::new();
        stdout.read_line(&mut started).unwrap();
        assert_eq!(started, "started\n");
        let stdin = child.stdin.take();
        if http.starts_with("0.0.0.0:") {
            assert!(line.contains("other hosts can reach it"), "{line}");
        }
        Server {
            child,
            stdin,
            stderr: err,
            stdout,
            addr,
            dir,
        }
    }

    /// Closes stdin; the program ends normally: its output and status are as without
    /// rprof, and no thread dump cut its sleeping thread's nanosleep short (eintr=0).
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).unwrap();
        let mut stdout = String::from("started\n");
        self.stdout.read_to_string(&mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{rest}");
        assert!(stdout.ends_with("eintr=0\nhttp_server done\n"), "{stdout}");
        stdout
    }
}

fn profile(body: &[u8]) -> Profile {
    let p = rprof_profile::decode(body).expect("a profile");
    rprof_profile::check_valid(&p).unwrap();
    p
}

#[test]
fn serves_go_paths_with_go_status_codes_and_types() {
    // Every interface, said in the address line (checked by Server::start).
    let s = Server::start("http-paths", "0.0.0.0:0");
    let (st, h, body) = get(&s.addr, "GET", "/debug/pprof/", b"");
    assert_eq!(st, 200);
    assert!(h.contains("content-type: text/html"), "{h}");
    let page = String::from_utf8_lossy(&body);
    for name in ["allocs", "block", "heap", "mutex", "profile", "cmdline"] {
        assert!(page.contains(&format!(">{name}</a>")), "{name}: {page}");
    }
    for (path, name) in [
        ("heap", "heap"),
        ("allocs", "allocs"),
        ("block", "block"),
        ("mutex", "mutex"),
    ] {
        let (st, h, body) = get(&s.addr, "GET", &format!("/debug/pprof/{path}"), b"");
        assert_eq!(st, 200, "{path}");
        assert!(h.contains("content-type: application/octet-stream"), "{h}");
        assert!(
            h.contains(&format!(
                "content-disposition: attachment; filename=\"{name}\""
            )),
            "{h}"
        );
        let p = profile(&body);
        if path == "allocs" {
            assert_eq!(p.str(p.default_sample_type), "alloc_space");
        }
    }
    let (st, h, body) = get(&s.addr, "GET", "/debug/pprof/nothing", b"");
    assert_eq!(
        (st, String::from_utf8_lossy(&body).trim()),
        (404, "Unknown profile")
    );
    assert!(
        h.contains("x-go-pprof: 1") && h.contains("x-content-type-options: nosniff"),
        "{h}"
    );
    let (st, _, _) = get(&s.addr, "GET", "/debug/pprof/heap?seconds=x", b"");
    assert_eq!(st, 400);
    let (st, _, _) = get(&s.addr, "GET", "/debug/pprof/heap?seconds=1&debug=1", b"");
    assert_eq!(st, 400);
    let (st, _, _) = get(&s.addr, "DELETE", "/debug/pprof/", b"");
    assert_eq!(st, 405);
    let (st, _, body) = get(&s.addr, "GET", "/debug/pprof/symbol", b"");
    assert_eq!(
        (st, String::from_utf8_lossy(&body).as_ref()),
        (200, "num_symbols: 1\n")
    );
    let (st, _, body) = get(&s.addr, "GET", "/debug/pprof/cmdline", b"");
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&body).ends_with("http_server"));
    // Remote symbolization as pprof asks for it: the address of a sampled frame is named.
    let (_, _, body) = get(&s.addr, "GET", "/debug/pprof/heap?debug=1", b"");
    let text = String::from_utf8_lossy(&body).into_owned();
    let pc = text
        .lines()
        .find(|l| l.contains("\tburst_before+0x"))
        .and_then(|l| l.split('\t').nth(1))
        .unwrap_or_else(|| panic!("burst_before in the heap text:\n{text}"))
        .to_string();
    let (st, _, body) = get(&s.addr, "POST", "/debug/pprof/symbol", pc.as_bytes());
    assert_eq!(st, 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("num_symbols: 1\n{pc} burst_before\n")
    );
    assert_eq!(s.finish(), "started\neintr=0\nhttp_server done\n");
}

/// Go's debug=1 grammar: header, records `<n>: <bytes> [<n>: <bytes>] @ 0x…`, `#` frame
/// lines, and the MemStats block; block and mutex with their `---` headers.
#[test]
fn legacy_texts_follow_go_grammar() {
    let s = Server::start("http-text", "127.0.0.1:0");
    std::thread::sleep(Duration::from_millis(300));
    let (_, h, body) = get(&s.addr, "GET", "/debug/pprof/heap?debug=1&gc=1", b"");
    assert!(h.contains("content-type: text/plain"), "{h}");
    let text = String::from_utf8_lossy(&body).into_owned();
    let mut lines = text.lines();
    let head = lines.next().unwrap();
    let record = |l: &str| -> bool {
        let Some((counts, addrs)) = l.split_once(" @ ") else {
            return false;
        };
        let c: Vec<&str> = counts
            .split([':', ' ', '[', ']'])
            .filter(|x| !x.is_empty())
            .collect();
        c.len() == 4
            && c.iter().all(|x| x.parse::<u64>().is_ok())
            && addrs.split(' ').all(|a| a.starts_with("0x"))
    };
    assert!(
        head.starts_with("heap profile: ") && head.ends_with(" @ heap/1048576"),
        "{head}"
    );
    assert!(
        record(&head["heap profile: ".len()..].replace(" @ heap/1048576", " @ 0x0")),
        "{head}"
    );
    let mut records = 0;
    for l in lines.by_ref() {
        if l.starts_with("# runtime.MemStats") {
            break;
        }
        if l.is_empty() || l.starts_with("#\t0x") {
            continue;
        }
        assert!(record(l), "{l}");
        records += 1;
    }
    assert!(records > 0);
    let stats: Vec<&str> = lines.collect();
    for f in [
        "Alloc",
        "TotalAlloc",
        "Sys",
        "Mallocs",
        "Frees",
        "HeapAlloc",
        "HeapSys",
        "HeapObjects",
        "NumGC",
        "MaxRSS",
    ] {
        assert!(
            stats.iter().any(|l| l.starts_with(&format!("# {f} = "))),
            "{f}"
        );
    }
    let mallocs: u64 = stats
        .iter()
        .find_map(|l| l.strip_prefix("# Mallocs = "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(mallocs >= 64, "{mallocs}");
    check_memstats(&stats);
    for (path, first) in [("mutex", "--- mutex:"), ("block", "--- contention:")] {
        let (_, _, body) = get(&s.addr, "GET", &format!("/debug/pprof/{path}?debug=1"), b"");
        let text = String::from_utf8_lossy(&body).into_owned();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(first));
        assert_eq!(lines.next(), Some("cycles/second=1000000000"));
        for l in lines
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("sampling period="))
        {
            let (v, addrs) = l.split_once(" @ ").unwrap_or_else(|| panic!("{l}"));
            assert!(v.split(' ').all(|x| x.parse::<i64>().is_ok()), "{l}");
            assert!(addrs.split(' ').all(|a| a.starts_with("0x")), "{l}");
        }
    }
    s.finish();
}

/// The program keeps 64 blocks of 64 KiB (burst_before) and has six threads: the
/// allocator's figures hold at least those bytes, and the thread stacks are counted.
fn check_memstats(stats: &[&str]) {
    let field = |f: &str| -> u64 {
        let v = stats
            .iter()
            .find_map(|l| l.strip_prefix(&format!("# {f} = ")))
            .unwrap_or_else(|| panic!("no {f}"));
        v.split(' ').next().unwrap().parse().unwrap()
    };
    let kept = 64 * 65536;
    assert!(
        field("HeapAlloc") >= kept,
        "HeapAlloc {}",
        field("HeapAlloc")
    );
    assert!(field("HeapInuse") >= field("HeapAlloc"));
    assert!(field("HeapSys") >= field("HeapInuse"));
    assert!(field("Stack") >= 6 * 64 * 1024, "Stack {}", field("Stack"));
    assert!(field("Sys") >= field("HeapSys") + field("Stack"));
    assert!(field("MaxRSS") >= kept);
    assert_eq!(field("NumGC"), 0);
}

#[test]
fn memstats_under_jemalloc() {
    let Some(preload) = jemalloc_preload() else {
        return;
    };
    let s = Server::start_with("http-jemalloc", "127.0.0.1:0", &[("LD_PRELOAD", &preload)]);
    std::thread::sleep(Duration::from_millis(300));
    let (_, _, body) = get(&s.addr, "GET", "/debug/pprof/heap?debug=1", b"");
    let text = String::from_utf8_lossy(&body).into_owned();
    let stats: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("# runtime.MemStats"))
        .collect();
    check_memstats(&stats);
    s.finish();
}

/// A delta window holds the burst made inside it and not the one before it; two CPU
/// windows taken at the same time, and a snapshot file written meanwhile (the files' own
/// consumer), are each right: several consumers, overlapping windows. Pyroscope's
/// delta_heap gives the change since its previous request (in-use as it stands).
#[test]
fn delta_and_cpu_windows_overlap_with_the_files() {
    let s = Server::start("http-delta", "127.0.0.1:0");
    std::thread::sleep(Duration::from_millis(300));
    let first = summarize(
        &profile(&get(&s.addr, "GET", "/debug/pprof/delta_heap", b"").2),
        "alloc_space",
    );
    assert!(first.cum("burst_before") > 0, "{:?}", first.functions());
    let request = |path: &'static str| {
        let addr = s.addr.clone();
        std::thread::spawn(move || get(&addr, "GET", path, b""))
    };
    let heap = request("/debug/pprof/heap?seconds=2");
    let cpus = [
        request("/debug/pprof/profile?seconds=2"),
        request("/debug/pprof/profile?seconds=2"),
    ];
    std::thread::sleep(Duration::from_millis(500));
    let pid = s.child.id();
    kill(pid, "USR1");
    kill(pid, "USR2");
    let (st, _, body) = heap.join().unwrap();
    assert_eq!(st, 200);
    let d = summarize(&profile(&body), "alloc_space");
    assert!(d.cum("burst_later") > 0, "{:?}", d.functions());
    assert_eq!(d.cum("burst_before"), 0, "{:?}", d.functions());
    for cpu in cpus {
        let (st, _, body) = cpu.join().unwrap();
        assert_eq!(st, 200);
        let p = profile(&body);
        let c = summarize(&p, "cpu");
        // The burner thread runs all the time: up to 2 s of CPU in the window (less when
        // the other tests take the machine's two cores).
        let burner = c.cum("burner");
        assert!((500_000_000..=2_500_000_000).contains(&burner), "{burner}");
        assert!(
            (p.duration_nanos - 2_000_000_000).abs() < 300_000_000,
            "{}",
            p.duration_nanos
        );
    }
    let second_delta = profile(&get(&s.addr, "GET", "/debug/pprof/delta_heap", b"").2);
    let second = summarize(&second_delta, "alloc_space");
    assert!(second.cum("burst_later") > 0, "{:?}", second.functions());
    assert_eq!(second.cum("burst_before"), 0, "{:?}", second.functions());
    // In-use figures are what is live at the end, as Pyroscope's godeltaprof gives them,
    // not a change: burst_before's blocks are still held.
    let live = summarize(&second_delta, "inuse_space");
    assert!(live.cum("burst_before") > 0, "{:?}", live.functions());
    // The snapshot file covers the time since start, whatever the server did.
    std::thread::sleep(Duration::from_millis(300));
    let snap = files_of(&s.dir, "cpu");
    assert_eq!(snap.len(), 1, "{snap:?}");
    let f = summarize(&load(&snap[0]), "cpu");
    assert!(f.cum("burner") > 100_000_000, "{}", f.cum("burner"));
    s.finish();
}

#[test]
fn garbage_and_idle_connections_leave_it_serving() {
    let s = Server::start("http-garbage", "127.0.0.1:0");
    // More silent clients than requests served at once (32), and slow ones that send a
    // header a byte at a time: they hold descriptors, not the server.
    let idle: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(&s.addr).unwrap())
        .collect();
    let mut slow: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(&s.addr).unwrap())
        .collect();
    for c in &mut slow {
        c.write_all(b"GET /debug/pprof/heap HT").unwrap();
    }
    for i in 0..2000u32 {
        let mut c = TcpStream::connect(&s.addr).unwrap();
        let junk: Vec<u8> = (0..(i % 97) + 1)
            .map(|j| (i.wrapping_mul(31).wrapping_add(j * 7) % 256) as u8)
            .collect();
        let _ = c.write_all(&junk);
        let _ = c.write_all(b"\r\n\r\n");
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    let (st, _, _) = get(&s.addr, "GET", "/debug/pprof/heap", b"");
    assert_eq!(st, 200);
    // A client silent past the read timeout is told so.
    let mut late = TcpStream::connect(&s.addr).unwrap();
    late.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = late.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop((idle, slow));
    assert_eq!(s.finish(), "started\neintr=0\nhttp_server done\n");
}

#[test]
fn unix_socket_fork_child_and_failed_bind() {
    let sock = out_dir("http-unix-sock").join("p.sock");
    // A socket file whose listener is gone (a process that died): taken over.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let s = Server::start("http-unix", &format!("unix:{}", sock.display()));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    if have_tool(
        "curl",
        std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_ok(),
        "curl",
    ) {
        let out = std::process::Command::new("curl")
            .args(["-s", "--unix-socket"])
            .arg(&sock)
            .arg("http://x/debug/pprof/cmdline")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).ends_with("http_server"));
    }
    s.finish();
    // Removed when the process that bound it ends (its fork child's end left it).
    assert!(!sock.exists(), "the socket file outlived its server");
    // One that a process listens on is left to it.
    let live = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let r = run(
        "http-unix-live",
        &build("fork_child"),
        &[],
        &[("RPROF_HTTP", &format!("unix:{}", sock.display()))],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(
        r.stderr().contains("cannot serve profiles on unix:"),
        "{}",
        r.stderr()
    );
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
    drop(live);
    // A fixed port already taken: one line, and the program runs on and writes its files.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let prog = build("fork_child");
    let r = run(
        "http-bind",
        &prog,
        &[],
        &[("RPROF_HTTP", &format!(":{port}"))],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(
        r.stderr()
            .contains("cannot serve profiles on http://127.0.0.1:"),
        "{}",
        r.stderr()
    );
    // The fork child of a serving process holds no socket: not the listener, not a
    // connection.
    let dir = out_dir("http-fork");
    let mut child = spawn(&prog, &[], &[("RPROF_HTTP", "127.0.0.1:0")], &dir);
    let err = BufReader::new(child.stderr.take().unwrap());
    let mut checked = false;
    for line in err.lines() {
        let line = line.unwrap();
        if let Some(pid) = line.strip_prefix("child=") {
            // The parent prints this as soon as fork returns: give the child's fork handler
            // a moment to run, then no socket may remain (the child burns for a while).
            let sockets = || {
                std::fs::read_dir(format!("/proc/{}/fd", pid.trim()))
                    .map(|fds| {
                        fds.flatten()
                            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                            .filter(|t| t.to_string_lossy().starts_with("socket:"))
                            .count()
                    })
                    .unwrap_or(0)
            };
            let mut left = sockets();
            for _ in 0..20 {
                if left == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
                left = sockets();
            }
            assert_eq!(left, 0, "the fork child kept a socket");
            checked = true;
        }
    }
    assert!(child.wait().unwrap().success());
    assert!(checked);
}

/// goroutine: every program thread (rprof's own left out) with its name, state and stack;
/// the sleeping one is not woken (checked at the end: eintr=0). threadcreate: the stacks
/// that created them. /debug/vars: Go's expvar JSON.
#[test]
fn goroutine_threadcreate_and_vars() {
    let s = Server::start("http-goroutine", "127.0.0.1:0");
    std::thread::sleep(Duration::from_millis(300));
    let want = [
        ("http_server", "main"),
        ("burner", "burner"),
        ("allocator", "allocator"),
        ("contender-a", "contender"),
        ("contender-b", "contender"),
        ("sleeper", "sleeper"),
    ];
    for _ in 0..10 {
        let (st, h, body) = get(&s.addr, "GET", "/debug/pprof/goroutine?debug=2", b"");
        assert_eq!(st, 200);
        assert!(h.contains("content-type: text/plain"), "{h}");
        let text = String::from_utf8_lossy(&body).into_owned();
        let blocks: Vec<&str> = text.split("\n\n").filter(|b| !b.is_empty()).collect();
        assert_eq!(blocks.len(), want.len(), "{text}");
        for (name, function) in want {
            let block = blocks
                .iter()
                .find(|b| {
                    b.lines()
                        .next()
                        .unwrap()
                        .ends_with(&format!("thread \"{name}\"]:"))
                })
                .unwrap_or_else(|| panic!("no thread {name}: {text}"));
            let head = block.lines().next().unwrap();
            assert!(
                head.starts_with("goroutine ") && head.contains(" ["),
                "{head}"
            );
            assert!(
                block.lines().any(|l| l == format!("{function}(...)")),
                "{name} without {function}: {block}"
            );
        }
        assert!(text.contains("thread \"sleeper\"]:"));
        // rprof's own threads (rprof-http, rprof-collector…) are not the program's.
        assert!(!text.contains("thread \"rprof-"), "{text}");
    }
    let (_, _, body) = get(&s.addr, "GET", "/debug/pprof/goroutine", b"");
    let p = profile(&body);
    assert_eq!(p.sample_type_names(), ["goroutine"]);
    let total: i64 = p.sample.iter().map(|x| x.value[0]).sum();
    assert_eq!(total, want.len() as i64);
    let mut names: Vec<&str> = p
        .sample
        .iter()
        .filter_map(|x| p.label_str(x, "thread"))
        .collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = want.iter().map(|w| w.0).collect();
    expected.sort_unstable();
    assert_eq!(names, expected);
    let (_, _, body) = get(&s.addr, "GET", "/debug/pprof/goroutine?debug=1", b"");
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(
        text.starts_with(&format!("goroutine profile: total {}\n", want.len())),
        "{text}"
    );
    let (_, _, body) = get(&s.addr, "GET", "/debug/pprof/threadcreate?debug=1", b"");
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(
        text.starts_with("threadcreate profile: total 5\n"),
        "{text}"
    );
    assert!(text.contains("\tmain+0x"), "{text}");
    let (_, _, body) = get(&s.addr, "GET", "/debug/pprof/threadcreate", b"");
    assert_eq!(profile(&body).sample_type_names(), ["threadcreate"]);
    let (st, h, body) = get(&s.addr, "GET", "/debug/vars", b"");
    assert_eq!(st, 200);
    assert!(h.contains("content-type: application/json"), "{h}");
    let vars = String::from_utf8_lossy(&body).into_owned();
    assert!(
        vars.contains("\"cmdline\": [\"") && vars.contains("http_server\"]"),
        "{vars}"
    );
    assert!(
        vars.contains("\"Mallocs\":") && vars.contains("\"NumGC\":0"),
        "{vars}"
    );
    s.finish();
}

/// `go tool pprof` reads every profile over HTTP, and finds the burning thread's 1 s.
#[test]
fn go_tool_pprof_reads_every_path() {
    if !have_go() {
        return;
    }
    let s = Server::start("http-go", "127.0.0.1:0");
    std::thread::sleep(Duration::from_millis(300));
    let pprof = |args: &[&str], path: &str| -> String {
        let out = std::process::Command::new("go")
            .args(["tool", "pprof", "-top"])
            .args(args)
            .arg(format!("http://{}/debug/pprof/{path}", s.addr))
            .env("PPROF_TMPDIR", &s.dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let cpu = pprof(&["-seconds=1"], "profile");
    assert!(
        cpu.contains("Type: cpu") && cpu.contains(" burner"),
        "{cpu}"
    );
    assert!(pprof(&[], "heap").contains("Type: inuse_space"));
    assert!(pprof(&[], "allocs").contains("Type: alloc_space"));
    assert!(pprof(&[], "block").contains("Type: delay"));
    assert!(pprof(&[], "mutex").contains("Type: delay"));
    let g = pprof(&[], "goroutine");
    assert!(
        g.contains("Type: goroutine") && g.contains("of 6 total"),
        "{g}"
    );
    s.finish();
}

/// Where Go is installed: the debug=1 texts follow what Go's own handlers print (the same
/// MemStats fields in the same order, the same headers), and errors carry the same headers.
#[test]
fn texts_match_what_go_prints() {
    let Some(exe) = build_go("go_pprof_server") else {
        return;
    };
    let mut go = std::process::Command::new(&exe)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(go.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let go_addr = line.trim().to_string();
    let s = Server::start("http-vs-go", "127.0.0.1:0");
    std::thread::sleep(Duration::from_millis(300));
    let text = |addr: &str, path: &str| {
        String::from_utf8_lossy(&get(addr, "GET", path, b"").2).into_owned()
    };
    let fields = |t: &str| -> Vec<String> {
        t.lines()
            .filter_map(|l| {
                l.strip_prefix("# ")?
                    .split_once(" = ")
                    .map(|(k, _)| k.to_string())
            })
            .collect()
    };
    let (ours, theirs) = (
        text(&s.addr, "/debug/pprof/heap?debug=1"),
        text(&go_addr, "/debug/pprof/heap?debug=1"),
    );
    assert_eq!(fields(&ours), fields(&theirs));
    let head = |t: &str| {
        let l = t.lines().next().unwrap_or("").to_string();
        let shape: String = l
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        let mut squeezed = String::new();
        for c in shape.chars() {
            if !(c == '9' && squeezed.ends_with('9')) {
                squeezed.push(c);
            }
        }
        squeezed
    };
    assert_eq!(head(&ours), head(&theirs));
    let (ours, theirs) = (
        text(&s.addr, "/debug/pprof/mutex?debug=1"),
        text(&go_addr, "/debug/pprof/mutex?debug=1"),
    );
    let prefixes = |t: &str| -> Vec<String> {
        t.lines()
            .take(3)
            .map(|l| l.split('=').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(prefixes(&ours), prefixes(&theirs));
    let (ours, theirs) = (
        text(&s.addr, "/debug/pprof/goroutine?debug=1"),
        text(&go_addr, "/debug/pprof/goroutine?debug=1"),
    );
    assert_eq!(head(&ours), head(&theirs));
    let (_, ours, _) = get(&s.addr, "GET", "/debug/pprof/nothing", b"");
    let (_, theirs, _) = get(&go_addr, "GET", "/debug/pprof/nothing", b"");
    for h in [
        "content-type: text/plain; charset=utf-8",
        "x-content-type-options: nosniff",
        "x-go-pprof: 1",
    ] {
        assert!(
            ours.contains(h) && theirs.contains(h),
            "{h}: {ours} / {theirs}"
        );
    }
    drop(go.stdin.take());
    go.wait().unwrap();
    s.finish();
}
