//! What the profile server answers, checked against what the program itself knows: the
//! length of a CPU window against the burning thread's own CPU time, remote symbolization
//! against the addresses the program printed, MemStats against the allocator's own
//! figures, and thread grouping against the threads the program made.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

use common::*;

/// A program under rprof serving on 127.0.0.1:0; stdin kept open (the programs run until
/// it closes).
struct Served {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    addr: String,
}

impl Served {
    fn start(tag: &str, prog: &str, env: &[(&str, &str)]) -> Served {
        let exe = build(prog);
        let dir = out_dir(tag);
        let mut all = vec![("RPROF_HTTP", "127.0.0.1:0")];
        all.extend_from_slice(env);
        let mut child = spawn_piped(&exe, &[], &all, &dir);
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        let addr = served_address(&line);
        // The rest of stderr is drained so that the program never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = err.read_to_string(&mut rest);
        });
        Served {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            addr,
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).unwrap();
        l.trim_end().to_owned()
    }

    fn get(&self, path: &str) -> String {
        String::from_utf8_lossy(&request(&self.addr, "GET", path, b"")).into_owned()
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let st = wait_at_most(&mut self.child, Duration::from_secs(20)).expect("it ends");
        assert!(st.success(), "{st:?}");
    }
}

/// One request; the body of a 200 answer.
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let (status, _, body) = http_request(addr, method, path, body);
    assert_eq!(status, 200, "{path}");
    body
}

/// CPU time (user + system) of thread `tid` of `pid`, from /proc, in ns.
fn thread_cpu_ns(pid: u32, tid: &str) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<i64> = after_name
        .split(' ')
        .skip(11)
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as i64;
    (f[0] + f[1]) * 1_000_000_000 / hz
}

/// The thread of `pid` named `name`, waited for up to 2 s: a thread names itself once it
/// runs, which may come after the program said it started.
fn tid_named(pid: u32, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let found = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .find(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name)
            });
        if let Some(e) = found {
            return e.file_name().to_string_lossy().into_owned();
        }
        assert!(Instant::now() < deadline, "no thread {name}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `profile?seconds=2` covers two seconds: the thread that burns all the time shows, in
/// the window, the CPU time it used while the request ran (read from /proc around it), and
/// the request takes the two seconds it says. Half a window, or a window said to be two
/// seconds and shorter, fails.
#[test]
fn cpu_window_holds_the_cpu_of_its_whole_length() {
    let mut s = Served::start("answers-window", "http_server", &[]);
    assert_eq!(s.line(), "started");
    let pid = s.child.id();
    let burner = tid_named(pid, "burner");
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..2 {
        let before = thread_cpu_ns(pid, &burner);
        let start = Instant::now();
        let body = request(&s.addr, "GET", "/debug/pprof/profile?seconds=2", b"");
        let wall = start.elapsed();
        let used = thread_cpu_ns(pid, &burner) - before;
        let p = rprof_profile::decode(&body).unwrap();
        let got = summarize(&p, "cpu").cum("burner");
        assert!(
            (2_000_000_000..2_600_000_000).contains(&(wall.as_nanos() as i64)),
            "{wall:?}"
        );
        assert!(
            (p.duration_nanos - 2_000_000_000).abs() < 50_000_000,
            "{}",
            p.duration_nanos
        );
        // The window lies inside the measured span, which is longer by the time to
        // connect and to encode (tens of ms); the clock ticks are 10 ms.
        assert!(used > 400_000_000, "the burner hardly ran: {used}");
        assert!(
            got as f64 >= 0.85 * used as f64 - 30e6 && got as f64 <= 1.02 * used as f64 + 30e6,
            "window's burner CPU {got} ns, the thread used {used} ns meanwhile"
        );
    }
    s.finish();
}

/// Parsed `fn <name> <address>` lines up to "ready".
fn printed_functions(s: &mut Served) -> Vec<(String, u64)> {
    let mut fns = Vec::new();
    loop {
        let l = s.line();
        if l == "ready" {
            return fns;
        }
        let mut w = l.split(' ');
        assert_eq!(w.next(), Some("fn"), "{l}");
        let name = w.next().unwrap().to_owned();
        let addr = u64::from_str_radix(w.next().unwrap().trim_start_matches("0x"), 16).unwrap();
        fns.push((name, addr));
    }
}

/// pprof's remote symbolization: a POST of several addresses answers each with its own
/// function, as the program printed its functions' addresses.
#[test]
fn symbol_names_each_posted_address() {
    let mut s = Served::start("answers-symbol", "thread_sites", &[]);
    let fns = printed_functions(&mut s);
    assert_eq!(fns.len(), 8);
    // Reverse order, and one address twice: each line answers its own.
    let mut asked: Vec<&(String, u64)> = fns.iter().rev().collect();
    asked.push(&fns[1]);
    let body: Vec<String> = asked.iter().map(|(_, a)| format!("{a:#x}")).collect();
    let answer = String::from_utf8(request(
        &s.addr,
        "POST",
        "/debug/pprof/symbol",
        body.join("+").as_bytes(),
    ))
    .unwrap();
    let mut lines = answer.lines();
    assert_eq!(lines.next(), Some("num_symbols: 1"));
    let named: HashMap<u64, String> = lines
        .map(|l| {
            let (a, f) = l.split_once(' ').unwrap_or_else(|| panic!("{l}"));
            (
                u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap(),
                f.to_owned(),
            )
        })
        .collect();
    for (name, addr) in &fns {
        assert_eq!(
            named.get(addr).map(String::as_str),
            Some(name.as_str()),
            "{addr:#x}: {answer}"
        );
    }
    // A GET with the addresses in the query answers the same.
    let answer = s.get(&format!(
        "/debug/pprof/symbol?{:#x}+{:#x}",
        fns[2].1, fns[4].1
    ));
    assert!(
        answer.contains(&format!("{:#x} {}\n", fns[2].1, fns[2].0))
            && answer.contains(&format!("{:#x} {}\n", fns[4].1, fns[4].0)),
        "{answer}"
    );
    s.finish();
}

/// One record of a count profile's debug=1 text: its count, its `thread` label and the
/// functions of its frames.
#[derive(Debug)]
struct Record {
    count: u64,
    label: Option<String>,
    functions: Vec<String>,
}

fn records(text: &str, kind: &str) -> (u64, Vec<Record>) {
    let mut lines = text.lines();
    let head = lines.next().unwrap();
    let total = head
        .strip_prefix(&format!("{kind} profile: total "))
        .unwrap_or_else(|| panic!("{head}"))
        .parse()
        .unwrap();
    let mut out: Vec<Record> = Vec::new();
    for l in lines {
        if let Some((n, _)) = l.split_once(" @ ") {
            out.push(Record {
                count: n.parse().unwrap(),
                label: None,
                functions: Vec::new(),
            });
        } else if let Some(j) = l.strip_prefix("# labels: ") {
            let name = j.split('"').nth(3).unwrap().to_owned();
            out.last_mut().unwrap().label = Some(name);
        } else if let Some(frame) = l.strip_prefix("#\t") {
            let f = frame.split('\t').nth(1).unwrap_or("");
            let f = f.split('+').next().unwrap().to_owned();
            out.last_mut().unwrap().functions.push(f);
        }
    }
    (total, out)
}

/// Threads are grouped as Go groups goroutines: by stack and name together. Five creation
/// sites give five threadcreate records (the loop's two threads one record of 2); the two
/// threads named "twin" in different functions are two goroutine records, the two "pair"
/// threads in one function one record of 2.
#[test]
fn threads_group_by_stack_and_name() {
    let mut s = Served::start("answers-threads", "thread_sites", &[]);
    printed_functions(&mut s);
    let (total, recs) = records(&s.get("/debug/pprof/threadcreate?debug=1"), "threadcreate");
    assert_eq!(total, 6, "{recs:?}");
    assert_eq!(recs.len(), 5, "{recs:?}");
    for (site, n) in [
        ("site_a", 1),
        ("site_b", 1),
        ("site_c", 1),
        ("site_d", 2),
        ("site_e", 1),
    ] {
        let with: Vec<&Record> = recs
            .iter()
            .filter(|r| r.functions.iter().any(|f| f == site))
            .collect();
        assert_eq!(with.len(), 1, "{site}: {recs:?}");
        assert_eq!(with[0].count, n, "{site}: {recs:?}");
        assert!(with[0].functions.iter().any(|f| f == "main"), "{recs:?}");
    }
    let (total, recs) = records(&s.get("/debug/pprof/goroutine?debug=1"), "goroutine");
    assert_eq!(total, 7, "{recs:?}");
    let mut got: Vec<(String, String, u64)> = recs
        .iter()
        .map(|r| {
            let known = [
                "worker_wait",
                "twin_one",
                "twin_two",
                "pair_wait",
                "last_wait",
            ];
            let f = r
                .functions
                .iter()
                .find(|f| known.contains(&f.as_str()))
                .cloned()
                .unwrap_or_else(|| "main".to_owned());
            (r.label.clone().unwrap_or_default(), f, r.count)
        })
        .collect();
    got.sort();
    let want: Vec<(String, String, u64)> = [
        ("last", "last_wait", 1),
        ("pair", "pair_wait", 2),
        ("thread_sites", "main", 1),
        ("twin", "twin_one", 1),
        ("twin", "twin_two", 1),
        ("worker", "worker_wait", 1),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
    .collect();
    assert_eq!(got, want, "{recs:?}");
    // debug=2 names the system call each thread waits in, the last one's too.
    let dump = s.get("/debug/pprof/goroutine?debug=2");
    for (name, call) in [("worker", "read"), ("last", "rt_sigsuspend")] {
        let head = dump
            .lines()
            .find(|l| l.ends_with(&format!("thread \"{name}\"]:")))
            .unwrap_or_else(|| panic!("{dump}"));
        assert!(head.contains(&format!(", in {call}, ")), "{head}");
    }
    // The proto form groups the same way.
    let p = rprof_profile::decode(&request(&s.addr, "GET", "/debug/pprof/goroutine", b"")).unwrap();
    assert_eq!(p.sample.len(), 6);
    s.finish();
}

/// `name=value` pairs of a line the program printed.
fn fields(line: &str) -> HashMap<String, u64> {
    line.split(' ')
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// A MemStats field from `# Name = N` lines or `"Name":N` JSON.
fn memstat(text: &str, name: &str) -> u64 {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("# {name} = ")))
        .map(str::to_owned)
        .or_else(|| {
            let key = format!("\"{name}\":");
            let at = text.find(&key)? + key.len();
            Some(
                text[at..]
                    .split([',', '}'])
                    .next()
                    .unwrap()
                    .trim()
                    .to_owned(),
            )
        })
        .unwrap_or_else(|| panic!("no {name}"));
    line.split(' ').next().unwrap().parse().unwrap()
}

/// What each MemStats field must be, from the allocator's own figures the program printed.
fn expected_memstats(own: &HashMap<String, u64>) -> Vec<(&'static str, u64)> {
    if let Some(&arena) = own.get("arena") {
        let (h, u, f) = (own["hblkhd"], own["uordblks"], own["fordblks"]);
        vec![
            ("HeapAlloc", u + h),
            ("Alloc", u + h),
            ("HeapInuse", u + h),
            ("HeapSys", arena + h),
            ("HeapIdle", f),
            ("HeapReleased", 0),
        ]
    } else {
        let (a, c, m) = (own["allocated"], own["active"], own["mapped"]);
        vec![
            ("HeapAlloc", a),
            ("Alloc", a),
            ("HeapInuse", c),
            ("HeapSys", m),
            ("HeapIdle", m - c),
            ("HeapReleased", own["retained"]),
        ]
    }
}

/// The allocator's figures that the program prints for itself are those of heap?debug=1,
/// /debug/vars and the heap file's comments, field by field: glibc's mallinfo2, and
/// jemalloc's mallctl where jemalloc is installed.
#[test]
fn memstats_are_the_allocators_own_figures() {
    let mut setups: Vec<Vec<(&str, String)>> = vec![Vec::new()];
    if let Some(preload) = jemalloc_preload() {
        setups.push(vec![("LD_PRELOAD", preload)]);
    }
    for env in setups {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut s = Served::start("answers-memstats", "allocator_stats", &env);
        s.line();
        // A first request makes rprof's connection thread, whose thread-local storage
        // glibc's pthread_create takes from the program's malloc (README: "MemStats in a
        // native program"); later requests reuse it.
        s.get("/debug/pprof/");
        s.stdin.as_mut().unwrap().write_all(b"now\n").unwrap();
        let own = fields(&s.line());
        let text = s.get("/debug/pprof/heap?debug=1");
        let vars = s.get("/debug/vars");
        // glibc's pthread_create takes each new rprof connection thread's TLS vector (288
        // bytes) from the program's malloc when no cached stack is free yet (the previous
        // request's thread may still be ending), and under jemalloc that refills the
        // server thread's cache of the size: a little slack, far below any wrong field.
        let slack = if own.contains_key("arena") {
            4096
        } else {
            65536
        };
        for (name, want) in expected_memstats(&own) {
            for (page, got) in [
                ("heap?debug=1", memstat(&text, name)),
                ("/debug/vars", memstat(&vars, name)),
            ] {
                assert!(
                    got.abs_diff(want) <= slack,
                    "{page} {name} = {got}, the allocator said {want}: {own:?}"
                );
            }
        }
        assert_eq!(
            memstat(&text, "Sys"),
            memstat(&text, "HeapSys") + memstat(&text, "Stack")
        );
        s.finish();

        // The heap file written at exit, its comments against the figures printed last.
        let exe = build("allocator_stats");
        let dir = out_dir("answers-memstats-file");
        let out = command(&exe, &["exit"], &env, &dir).output().unwrap();
        assert!(out.status.success());
        let own = fields(String::from_utf8_lossy(&out.stdout).trim());
        let heap = files_of(&dir, "heap") // ".heap." is not ".heap-peak."
            .into_iter()
            .next()
            .expect("a heap file");
        let comments = load(&heap).comments().join("\n");
        let stats = comments
            .lines()
            .find_map(|l| l.strip_prefix("runtime.MemStats: "))
            .unwrap_or_else(|| panic!("{comments}"))
            .replace(", ", "\n# ");
        let stats = format!("# {stats}");
        for (name, want) in expected_memstats(&own) {
            if want != 0 {
                let got = memstat(&stats, name);
                assert!(
                    got.abs_diff(want) <= slack,
                    "file {name} = {got}, the allocator said {want}: {own:?}"
                );
            }
        }
        if let Some(&arena) = own.get("arena") {
            let line = format!(
                "glibc mallinfo2: arena = {arena} bytes, mmapped (hblkhd) = {} bytes, in use (uordblks) = {} bytes, free (fordblks) = {} bytes, releasable (keepcost) = {} bytes",
                own["hblkhd"], own["uordblks"], own["fordblks"], own["keepcost"]
            );
            assert!(comments.contains(&line), "{line}\n{comments}");
        }
    }
}

/// One GET over a Unix socket; the body.
fn unix_get(path: &std::path::Path, what: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    write!(
        s,
        "GET {what} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// With `%p` in RPROF_HTTP, a prefork server's workers each serve on their own address,
/// as the parent does: each socket answers for its own process (its thread dump's main
/// thread is that pid).
#[test]
fn each_fork_child_serves_on_its_own_address_with_percent_p() {
    let exe = build("fork_server");
    let dir = out_dir("answers-fork-p");
    // Socket paths must fit in 108 bytes: a short directory of their own, whatever the
    // checkout's path.
    let socks = std::env::temp_dir().join(format!("rprof-fork-p-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&socks);
    std::fs::create_dir(&socks).unwrap();
    let pattern = format!("unix:{}/s.%p.sock", socks.display());
    let mut child = spawn_piped(&exe, &[], &[("RPROF_HTTP", &pattern)], &dir);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let pids: Vec<u32> = line
        .trim()
        .strip_prefix("pids ")
        .unwrap()
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3);
    for pid in &pids {
        let sock = socks.join(format!("s.{pid}.sock"));
        let mut dump = String::new();
        for _ in 0..100 {
            if sock.exists() {
                dump = unix_get(&sock, "/debug/pprof/goroutine?debug=2");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            dump.starts_with(&format!("goroutine {pid} [")),
            "{}: {dump}",
            sock.display()
        );
    }
    drop(child.stdin.take());
    let st = wait_at_most(&mut child, Duration::from_secs(20)).expect("it ends");
    assert!(st.success());
    let _ = std::fs::remove_dir_all(&socks);
}

/// A fixed address already taken, under a shell that runs ten commands: the refusal is
/// said once (by the shell), not by each command; at RPROF_LOG=info each says it.
#[test]
fn a_taken_port_is_said_once_under_a_wrapper() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done";
    for (log, want) in [("warn", 1), ("info", 11)] {
        let dir = out_dir("answers-taken");
        let out = command(
            std::path::Path::new("/bin/sh"),
            &["-c", script],
            &[("RPROF_HTTP", &addr), ("RPROF_LOG", log)],
            &dir,
        )
        .output()
        .unwrap();
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = stderr
            .lines()
            .filter(|l| l.starts_with("rprof: cannot serve profiles on"))
            .count();
        assert_eq!(said, want, "RPROF_LOG={log}:\n{stderr}");
    }
}

/// Thread dumps while threads go from one short wait to the next: no wait is cut short,
/// and each dump has every thread's stack. (Signalling the threads seen running reached
/// some of them in their next wait: 32 EINTRs in 100 dumps.)
#[test]
fn thread_dumps_cut_no_wait_short() {
    let exe = build("wait_switcher");
    let dir = out_dir("dump-eintr");
    let mut child = spawn_piped(&exe, &["4", "4"], &[("RPROF_HTTP", "127.0.0.1:0")], &dir);
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = served_address(&line);
    let start = Instant::now();
    let (mut dumps, mut whole) = (0, 0);
    while dumps < 60 && start.elapsed() < Duration::from_millis(3000) {
        let text = String::from_utf8_lossy(&request(
            &addr,
            "GET",
            "/debug/pprof/goroutine?debug=2",
            b"",
        ))
        .into_owned();
        // The first dumps may come before the threads start.
        whole += usize::from(text.matches("\nswitcher(").count() == 4);
        dumps += 1;
    }
    let st = wait_at_most(&mut child, Duration::from_secs(20)).expect("it ends");
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(st.success(), "{st:?} {rest}");
    assert!(dumps >= 40, "only {dumps} dumps in 3 s");
    assert!(
        whole + 3 >= dumps,
        "{whole} of {dumps} dumps had the four threads' stacks"
    );
    assert!(
        rest.contains("eintr=0\n"),
        "waits were interrupted by {dumps} dumps: {rest}"
    );
}
