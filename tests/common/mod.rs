//! Helpers for the integration tests: build c_tests programs, run them under librprof.so,
//! decode and summarise the profiles they write.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rprof_profile::Profile;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The release build's directory (`<target>/release`), wherever the target directory is
/// (CARGO_TARGET_DIR moves it; cargo puts CARGO_TARGET_TMPDIR at `<target>/tmp`).
pub fn release_dir() -> PathBuf {
    scratch()
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory")
        .join("release")
}

/// librprof.so from the release build (scripts/test.sh builds it before the tests run).
pub fn lib() -> PathBuf {
    let p = release_dir().join("librprof.so");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --release` first (scripts/test.sh does)",
        p.display()
    );
    p
}

fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Compiles c_tests/<name>.c (or .cpp, or .rs with rustc) with `-O2 -g` and no frame pointers, once per run.
pub fn build(name: &str) -> PathBuf {
    let out_dir = scratch().join("c_tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashSet::new);
    if built.contains(name) {
        return out;
    }
    let c = root().join(format!("c_tests/{name}.c"));
    let rust = root().join(format!("c_tests/{name}.rs"));
    if rust.exists() {
        // Optimised, with debug info, no frame pointers (the default), as a release build.
        let status = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .args(["-C", "opt-level=2", "-g", "-o"])
            .arg(&out)
            .arg(&rust)
            .status()
            .expect("rustc is needed");
        assert!(status.success(), "compiling {}", rust.display());
        built.insert(name.to_owned());
        return out;
    }
    let library = name.strip_prefix("lib").and_then(|n| n.strip_suffix(".so"));
    let (src, compiler) = if let Some(lib) = library {
        (root().join(format!("c_tests/{lib}.c")), "cc")
    } else if c.exists() {
        (c, "cc")
    } else {
        (root().join(format!("c_tests/{name}.cpp")), "c++")
    };
    let mut cmd = Command::new(compiler);
    // Frame pointers off, as in distribution builds: the unwinder must use CFI.
    cmd.args(["-O2", "-g", "-fomit-frame-pointer", "-pthread", "-o"])
        .arg(&out)
        .arg(&src);
    if library.is_some() {
        cmd.args(["-shared", "-fPIC"]);
    }
    cmd.arg("-ldl");
    let status = cmd.status().expect("a C compiler (cc, c++) is needed");
    assert!(status.success(), "compiling {}", src.display());
    built.insert(name.to_owned());
    out
}

/// `c_tests/<name>.c` built as `variant` with `flags` added (after the defaults, so that
/// they win: `-fno-omit-frame-pointer`, say).
pub fn build_variant(name: &str, variant: &str, flags: &[&str]) -> PathBuf {
    let out = scratch().join("c_tests").join(variant);
    std::fs::create_dir_all(scratch().join("c_tests")).unwrap();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashSet::new);
    if built.contains(variant) {
        return out;
    }
    let status = Command::new("cc")
        .args(["-O2", "-g", "-fomit-frame-pointer", "-pthread"])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(root().join(format!("c_tests/{name}.c")))
        .arg("-ldl")
        .status()
        .expect("a C compiler (cc) is needed");
    assert!(status.success(), "compiling {name} as {variant}");
    built.insert(variant.to_owned());
    out
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// A fresh output directory for one run.
pub fn out_dir(tag: &str) -> PathBuf {
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let d = scratch().join(format!("runs/{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Run {
    pub dir: PathBuf,
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// The `rprof:` lines on stderr.
    pub fn warnings(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.starts_with("rprof:"))
            .map(String::from)
            .collect()
    }
    /// A figure the program printed on stderr as `name=N`.
    pub fn printed(&self, name: &str) -> i64 {
        self.stderr()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}="))?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name}= line in stderr:\n{}", self.stderr()))
    }
    /// The process CPU time the program reported (cpu_ns=N on stderr).
    pub fn cpu_ns(&self) -> i64 {
        self.printed("cpu_ns")
    }
    /// Profile files written into the run's directory, sorted by name.
    pub fn files(&self) -> Vec<PathBuf> {
        files_in(&self.dir)
    }
    /// Profile files of one kind ("cpu", "heap") written into the run's directory.
    pub fn files_of(&self, kind: &str) -> Vec<PathBuf> {
        files_of(&self.dir, kind)
    }
    /// The pid of the run's process, from the name of its first profile file.
    pub fn pid(&self) -> u32 {
        self.files()
            .iter()
            .find_map(|f| {
                let n = f.file_name()?.to_str()?;
                n.strip_prefix("rprof.")?.split('.').next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no profile files in {}", self.dir.display()))
    }
    /// The one final (exit) file of `kind` for process `pid`.
    pub fn final_profile(&self, pid: u32, kind: &str) -> Profile {
        load(&self.dir.join(format!("rprof.{pid}.{kind}.pb.gz")))
    }
}

/// Profile files of one kind in `dir`, sorted by name.
pub fn files_of(dir: &Path, kind: &str) -> Vec<PathBuf> {
    files_in(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&format!(".{kind}.")))
        .collect()
}

pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".pb.gz"))
        .collect();
    v.sort();
    v
}

/// Starts `cmd` with every signal at its default action and none blocked, whatever the
/// test runner inherited: a shell's background job starts with SIGINT ignored, `nohup`
/// ignores SIGHUP, some CI runners ignore or block more. The tests rely on defaults.
pub fn default_dispositions(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; signal(2) and sigprocmask(2) are
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            for sig in 1..=31 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        })
    }
}

/// Removes every `RPROF_*` variable of the test's own environment from `cmd`, so that
/// a caller's settings never leak into a run.
pub fn clear_rprof_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RPROF_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A command for `prog` under librprof.so writing to `dir` (RPROF_OUT=<dir>/rprof), with
/// no `RPROF_*` variable but those in `env`.
pub fn command(prog: &Path, args: &[&str], env: &[(&str, &str)], dir: &Path) -> Command {
    let mut cmd = Command::new(prog);
    clear_rprof_env(&mut cmd);
    default_dispositions(&mut cmd);
    cmd.args(args)
        .env("LD_PRELOAD", lib())
        .env("RPROF_OUT", dir.join("rprof"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn run(tag: &str, prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = out_dir(tag);
    let output = command(prog, args, env, &dir).output().unwrap();
    Run { dir, output }
}

pub fn spawn(prog: &Path, args: &[&str], env: &[(&str, &str)], dir: &Path) -> Child {
    command(prog, args, env, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// As `spawn`, with a pipe to the program's stdin too (programs that run until it closes).
pub fn spawn_piped(prog: &Path, args: &[&str], env: &[(&str, &str)], dir: &Path) -> Child {
    command(prog, args, env, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The program run without the library, for comparing output and status.
pub fn run_plain(prog: &Path, args: &[&str]) -> Output {
    default_dispositions(&mut Command::new(prog))
        .args(args)
        .output()
        .unwrap()
}

/// Decodes a profile file and checks its structure.
pub fn load(path: &Path) -> Profile {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let p = rprof_profile::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    rprof_profile::check_valid(&p).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    p
}

/// Per-function flat and cumulative values of sample type `index`, as pprof -top counts
/// them (inlined frames expanded; a function counts once per sample in cum).
pub struct Summary {
    pub total: i64,
    pub flat: HashMap<String, i64>,
    pub cum: HashMap<String, i64>,
    pub by_thread: HashMap<String, i64>,
    pub samples: usize,
}

impl Summary {
    pub fn cum(&self, f: &str) -> i64 {
        self.cum.get(f).copied().unwrap_or(0)
    }
    pub fn flat(&self, f: &str) -> i64 {
        self.flat.get(f).copied().unwrap_or(0)
    }
    pub fn functions(&self) -> Vec<&str> {
        self.cum.keys().map(String::as_str).collect()
    }
}

pub fn summarize(p: &Profile, sample_type: &str) -> Summary {
    let idx = p
        .sample_type_index(sample_type)
        .unwrap_or_else(|| panic!("no sample type {sample_type}"));
    let (locs, funcs) = (p.location_by_id(), p.function_by_id());
    let mut s = Summary {
        total: 0,
        flat: HashMap::new(),
        cum: HashMap::new(),
        by_thread: HashMap::new(),
        samples: p.sample.len(),
    };
    for sample in &p.sample {
        let v = sample.value[idx];
        s.total += v;
        let frames = p.frames(sample, &locs, &funcs);
        if let Some(leaf) = frames.first() {
            *s.flat.entry(leaf.function.to_owned()).or_default() += v;
        }
        let mut seen = HashSet::new();
        for f in &frames {
            if seen.insert(f.function) {
                *s.cum.entry(f.function.to_owned()).or_default() += v;
            }
        }
        if let Some(t) = p.label_str(sample, "thread") {
            *s.by_thread.entry(t.to_owned()).or_default() += v;
        }
    }
    s
}

/// Half-width of a confidence interval for a proportion `p` estimated from `n`
/// independent samples, at `z` standard deviations.
pub fn proportion_bound(p: f64, n: f64, z: f64) -> f64 {
    z * (p * (1.0 - p) / n).sqrt()
}

/// Asserts that `part/whole` is within the binomial bound of `expected` (z = 5: a false
/// failure about once in 3.5 million runs).
pub fn assert_share(what: &str, part: i64, whole: i64, expected: f64, n_independent: f64) {
    let share = part as f64 / whole as f64;
    let bound = proportion_bound(expected, n_independent, 5.0);
    assert!(
        (share - expected).abs() <= bound,
        "{what}: share {share:.3}, expected {expected} ± {bound:.3} (n = {n_independent:.0})"
    );
}

/// Asserts `value` within `rel` (e.g. 0.10) of `truth`.
pub fn assert_within(what: &str, value: i64, truth: i64, rel: f64) {
    let err = (value - truth).abs() as f64 / truth as f64;
    assert!(
        err <= rel,
        "{what}: {value} vs truth {truth}: off by {:.1}% (allowed {:.0}%)",
        err * 100.0,
        rel * 100.0
    );
}

/// Whether an optional tool the test needs is there. Missing under CI (CI=true), the
/// test fails, since `.ci/run` installs it; elsewhere it says that it skips that part.
pub fn have_tool(what: &str, present: bool, install: &str) -> bool {
    if !present {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{what} is missing under CI: .ci/run must install {install}"
        );
        eprintln!("skipped: {what} is not installed (install {install})");
    }
    present
}

/// Whether `go` (for `go tool pprof`) is installed; see `have_tool`.
pub fn have_go() -> bool {
    let present = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    have_tool("go", present, "golang-go")
}

/// Builds c_tests/<name>.go with `go build` (cgo too, with the C compiler) into the
/// scratch directory; None when Go is not installed (see `have_go`).
pub fn build_go(name: &str) -> Option<PathBuf> {
    if !have_go() {
        return None;
    }
    // Once per test binary: its tests run in parallel and would build over each other.
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built_here = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let exe = scratch().join("go-build").join(name);
    if built_here.iter().any(|n| n == name) {
        return Some(exe);
    }
    std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
    let mut go = Command::new("go");
    go.args(["build", "-o"])
        .arg(&exe)
        .arg(root().join(format!("c_tests/{name}.go")))
        .env("CGO_ENABLED", "1");
    if std::env::var_os("HOME").is_none() && std::env::var_os("GOCACHE").is_none() {
        go.env("GOCACHE", scratch().join("go-cache"));
    }
    let built = go.output().unwrap();
    assert!(
        built.status.success(),
        "go build {name}: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    built_here.push(name.to_string());
    Some(exe)
}

/// `go tool pprof -top` on a file, when `go` is installed (see `have_tool`).
pub fn go_pprof_top(path: &Path, extra: &[&str]) -> Option<String> {
    go_pprof_top_files(&[path], extra)
}

/// `go tool pprof -top` on several files (pprof merges them), when `go` is installed.
pub fn go_pprof_top_files(paths: &[&Path], extra: &[&str]) -> Option<String> {
    if !have_go() {
        return None;
    }
    let out = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .args(extra)
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go tool pprof failed on {paths:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every string in the profile's function table.
pub fn function_names(p: &Profile) -> Vec<String> {
    p.function
        .iter()
        .map(|f| p.str(f.name).to_owned())
        .collect()
}

pub fn pid_of(child: &Child) -> u32 {
    child.id()
}

/// `LD_PRELOAD` for librprof.so over Debian's jemalloc (a program that brings its own
/// allocator), or None (with a note) where libjemalloc2 is not installed.
pub fn jemalloc_preload() -> Option<String> {
    let jemalloc = Path::new("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2");
    have_tool("jemalloc", jemalloc.exists(), "libjemalloc2")
        .then(|| format!("{} {}", lib().display(), jemalloc.display()))
}

/// Waits up to `limit` for `child` to end; None (the child killed) if it did not.
pub fn wait_at_most(
    child: &mut Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Sends `sig` to `pid`.
pub fn kill(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// A number from a heap profile's statistics comments (`Mallocs = 123 ...`).
pub fn statistic(p: &Profile, name: &str) -> i64 {
    let prefix = format!("{name} = ");
    p.comments()
        .iter()
        .find_map(|l| l.strip_prefix(&prefix)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {:?}", p.comments()))
}

/// The host:port of the server's first stderr line (`rprof: serving profiles on http://…`).
pub fn served_address(line: &str) -> String {
    line.strip_prefix("rprof: serving profiles on ")
        .and_then(|l| l.split("/debug/pprof/").next())
        .unwrap_or_else(|| panic!("no address line: {line:?}"))
        .trim_start_matches("http://")
        .to_string()
}

/// One HTTP/1.1 request (Connection: close); returns (status, headers lower-cased, body).
pub fn http_request(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response");
    let head = String::from_utf8_lossy(&out[..split]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        // Go's server (in the comparison test) answers in chunks: <hex size>\r\n<data>\r\n.
        let mut plain = Vec::new();
        let mut rest = body.as_slice();
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            plain.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = plain;
    }
    (status, head, body)
}
