//! `rprof run`: checks its options, the output prefix and the program, starts the program
//! with librprof.so preloaded, passes signals on, exits as it did, then reports one line
//! per process that recorded something (from the run ledger each process appends to) and
//! counts the others.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::SystemTime;

/// The child's pid, for the forwarding signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Options and the variables they set.
const OPTIONS: &[(&str, &str)] = &[
    ("-o", "RPROF_OUT"),
    ("--profiles", "RPROF_PROFILES"),
    ("--cpu-hz", "RPROF_CPU_HZ"),
    ("--heap-rate", "RPROF_HEAP_RATE"),
    ("--block-rate", "RPROF_BLOCK_RATE"),
    ("--mutex-fraction", "RPROF_MUTEX_FRACTION"),
    ("--only", "RPROF_PROGRAMS"),
    ("--push", "RPROF_PUSH"),
    ("--push-period", "RPROF_PUSH_PERIOD"),
    ("--service-name", "RPROF_SERVICE_NAME"),
    ("--labels", "RPROF_LABELS"),
    ("--period", "RPROF_PERIOD"),
    ("--keep", "RPROF_KEEP"),
];

pub const HELP: &str = "usage: rprof run [OPTIONS] [--] PROGRAM [ARGS...]
Runs PROGRAM with librprof.so preloaded; it exits as PROGRAM does. Afterwards one line per
process that recorded something (pid, program, samples per kind, its files), and one line
counting the others. `--` is needed only when PROGRAM starts with `-`.
  -o PREFIX             files are PREFIX.<pid>.<kind>.pb.gz (default: rprof; RPROF_OUT)
  --only PATTERNS       profile only programs whose name matches one of these comma-separated
                        globs (RPROF_PROGRAMS); for python3, perl, bash and other
                        interpreters the script's name matches too: --only 'work.py'
  --profiles LIST       cpu,heap,block,mutex,wall (default: all but wall; RPROF_PROFILES)
  --cpu-hz N            CPU samples per second, 1 to 10000 (default: 100; RPROF_CPU_HZ)
  --heap-rate BYTES     mean bytes between heap samples, 0 for no heap profile
                        (default: 524288; RPROF_HEAP_RATE)
  --block-rate NS       Go's block profile rate (default: 10000; RPROF_BLOCK_RATE)
  --mutex-fraction N    Go's mutex profile fraction (default: 10; RPROF_MUTEX_FRACTION)
  --push URL            push each window to a backend: http://host:4040 (Pyroscope) or
                        otlp+http://host:4318 (OpenTelemetry) (RPROF_PUSH)
  --push-period S       seconds between pushes (default: 15; RPROF_PUSH_PERIOD)
  --service-name NAME   service_name of pushed profiles (default: the program's name)
  --labels K=V,...      labels added to pushed profiles (RPROF_LABELS)
  --period S            also write numbered files of each window every S seconds
                        (RPROF_PERIOD); --keep N keeps the last N of each kind (RPROF_KEEP)
Other RPROF_* variables in the environment apply as well, and are checked the same way.";

/// The librprof.so `rprof run` preloads (see `library`).
pub fn find_library() -> Result<PathBuf, String> {
    crate::library::find()
}

extern "C" fn forward(sig: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // A terminal's ^C reaches the whole process group, the child included: pass on only
    // signals sent to rprof itself by a process (kill), not by the kernel.
    // SAFETY: the kernel passes a valid siginfo to a SA_SIGINFO handler.
    let from_process = unsafe { (*info).si_code } <= 0;
    let child = CHILD.load(Ordering::Relaxed);
    if child > 0 && (from_process || sig == libc::SIGUSR2) {
        // SAFETY: kill only sends a signal.
        unsafe { libc::kill(child, sig) };
    }
}

fn install_forwarding() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR2] {
        // SAFETY: installs a SA_SIGINFO handler that only calls kill(2).
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = forward as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// What the command line asks: the variables to set and the program with its arguments.
struct Request<'a> {
    vars: Vec<(&'static str, &'a str)>,
    program: &'a [String],
}

/// Options up to the first argument that is not one (or up to `--`); the rest is the
/// program and its arguments. None: help was asked for.
fn parse(args: &[String]) -> Result<Option<Request<'_>>, String> {
    let mut vars = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            i += 1;
            break;
        }
        if a == "-h" || a == "--help" {
            return Ok(None);
        }
        if let Some((_, var)) = OPTIONS.iter().find(|(o, _)| *o == a) {
            let v = args
                .get(i + 1)
                .ok_or_else(|| format!("{a} needs a value; see rprof run --help"))?;
            vars.push((*var, v.as_str()));
            i += 2;
            continue;
        }
        if a.starts_with('-') && a.len() > 1 {
            return Err(format!(
                "unknown option {a} (put `--` before a program whose name starts with `-`); see rprof run --help"
            ));
        }
        break;
    }
    let program = &args[i..];
    if program.is_empty() {
        return Err("no program given; usage: rprof run [OPTIONS] [--] PROGRAM [ARGS...]".into());
    }
    Ok(Some(Request { vars, program }))
}

/// The option that sets `var`, for error messages.
fn option_of(var: &str) -> Option<&'static str> {
    OPTIONS.iter().find(|(_, v)| *v == var).map(|(o, _)| *o)
}

/// Checks the variables as the library will read them (the same parser): any value it
/// would warn about is an error here, before anything runs.
fn check_config(req: &Request<'_>) -> Result<rprof_config::Config, String> {
    let get = |k: &str| {
        req.vars
            .iter()
            .rev()
            .find(|(v, _)| *v == k)
            .map(|(_, val)| val.to_string())
            .or_else(|| std::env::var(k).ok())
    };
    let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
    let (cfg, mut warnings) = rprof_config::Config::parse(get, &cwd);
    warnings.extend(cfg.profiles.select(rprof_config::KINDS).1);
    if let Some(w) = warnings.first() {
        let var = w.split('=').next().unwrap_or("");
        let from = match option_of(var) {
            Some(o) if req.vars.iter().any(|(v, _)| *v == var) => format!("{o}: "),
            _ => String::new(),
        };
        // "RPROF_CPU_HZ=\"0\" is not ...; using 100": the library's words, less the fallback.
        let what = w.rsplit_once("; using").map_or(w.as_str(), |(a, _)| a);
        return Err(format!("{from}{what}; nothing was run"));
    }
    check_prefix(&cfg.out_prefix)?;
    Ok(cfg)
}

/// The output prefix's directory exists and can be written.
fn check_prefix(prefix: &Path) -> Result<(), String> {
    let dir = prefix.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Err(format!(
            "output prefix {}: {} is not a directory; nothing was run",
            prefix.display(),
            dir.display()
        ));
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| "the output directory's name holds a NUL byte".to_string())?;
    // SAFETY: access(2) reads the NUL-terminated path only.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(format!(
            "output prefix {}: cannot write in {} ({}); nothing was run",
            prefix.display(),
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The file `prog` names: itself if it holds a `/`, else the first executable in $PATH.
fn resolve(prog: &str) -> Result<PathBuf, String> {
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("cannot run {prog}: no such file; nothing was run"))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let p = dir.join(prog);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    Err(format!(
        "cannot run {prog}: not found in PATH; nothing was run"
    ))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What the kernel would start for `path`: an ELF file with or without a program
/// interpreter (the dynamic loader that honours LD_PRELOAD), or a `#!` script.
#[derive(Debug, PartialEq)]
enum Kind {
    Dynamic,
    Static,
    Script(PathBuf),
    Other,
}

fn kind_of(path: &Path) -> Result<Kind, String> {
    let bytes = read_head(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(rest) = bytes.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let interp = line.split_whitespace().next().unwrap_or("");
        return Ok(Kind::Script(PathBuf::from(interp)));
    }
    Ok(match elf_has_interpreter(&bytes) {
        Some(true) => Kind::Dynamic,
        Some(false) => Kind::Static,
        None => Kind::Other,
    })
}

/// The file's first 64 KiB (enough for an ELF header and its program headers).
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(64 * 1024)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Whether an ELF image has a PT_INTERP program header; None if it is not ELF (or its
/// headers lie beyond what was read).
fn elf_has_interpreter(b: &[u8]) -> Option<bool> {
    if b.len() < 0x40 || &b[..4] != b"\x7fELF" {
        return None;
    }
    let little = b[5] == 1;
    // The unsigned integer of `n` bytes at `o`, in the file's byte order.
    let uint = |o: usize, n: usize| -> Option<u64> {
        let bytes = b.get(o..o + n)?;
        let fold = |v: u64, &x: &u8| v << 8 | u64::from(x);
        Some(if little {
            bytes.iter().rev().fold(0, fold)
        } else {
            bytes.iter().fold(0, fold)
        })
    };
    let (phoff, phentsize, phnum) = match b[4] {
        2 => (uint(0x20, 8)?, uint(0x36, 2)?, uint(0x38, 2)?),
        1 => (uint(0x1c, 4)?, uint(0x2a, 2)?, uint(0x2c, 2)?),
        _ => return None,
    };
    const PT_INTERP: u64 = 3;
    for k in 0..phnum {
        let at = usize::try_from(phoff + k * phentsize).ok()?;
        if uint(at, 4)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

/// Refuses a program LD_PRELOAD cannot reach, saying why.
fn check_program(prog: &str) -> Result<(), String> {
    let path = resolve(prog)?;
    let static_msg = |p: &Path| {
        format!(
            "{} is statically linked (it has no program interpreter), so LD_PRELOAD cannot load librprof.so into it and nothing would be recorded; rebuild it dynamically linked (a Go program: with cgo, CGO_ENABLED=1) or use its own profiler (Go: net/http/pprof); nothing was run",
            p.display()
        )
    };
    match kind_of(&path)? {
        Kind::Static => Err(static_msg(&path)),
        Kind::Script(interp) if interp.is_absolute() => match kind_of(&interp) {
            Ok(Kind::Static) => Err(static_msg(&interp)),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

pub fn main(args: &[String]) -> Result<ExitCode, String> {
    let Some(req) = parse(args)? else {
        println!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    };
    let cfg = check_config(&req)?;
    let (prog, prog_args) = req.program.split_first().expect("parse checked");
    check_program(prog)?;
    let lib = find_library()?;
    let ledger = Ledger::create()?;
    let mut cmd = Command::new(prog);
    cmd.args(prog_args);
    let preload = match std::env::var("LD_PRELOAD") {
        Ok(existing) if !existing.is_empty() => format!("{}:{existing}", lib.display()),
        _ => lib.display().to_string(),
    };
    cmd.env("LD_PRELOAD", preload);
    for (var, v) in &req.vars {
        cmd.env(var, v);
    }
    cmd.env("RPROF_RUN_LEDGER", &ledger.path);
    let started = SystemTime::now();
    install_forwarding();
    // The child starts with default dispositions for the signals we forward.
    // SAFETY: pre_exec runs in the forked child before exec; sigaction is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR2] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {prog}: {e}"))?;
    CHILD.store(child.id() as i32, Ordering::Relaxed);
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("waiting for {prog}: {e}")),
        }
    };
    for line in ledger.report(&cfg, started) {
        eprintln!("rprof: {line}");
    }
    if let Some(sig) = status.signal() {
        // Die of the same signal, so our caller sees what it would have seen.
        // SAFETY: restores the default action and raises the signal in this process.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        return Ok(ExitCode::from(128 + sig as u8));
    }
    Ok(ExitCode::from(status.code().unwrap_or(1) as u8))
}

/// The run ledger: a file each process of the run appends one line to (see the library's
/// ledger.rs for the format). Removed when dropped.
struct Ledger {
    path: PathBuf,
}

/// One process's last line.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Loaded,
    Dormant(String),
    Ended {
        program: String,
        /// (kind, count) in the library's table order.
        counts: Vec<(String, u64)>,
        files: Option<String>,
    },
}

impl Ledger {
    fn create() -> Result<Ledger, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("rprof-run.{}.{nanos}.ledger", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Ledger { path })
    }

    /// The lines to print after the run.
    fn report(&self, cfg: &rprof_config::Config, started: SystemTime) -> Vec<String> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let entries = parse_ledger(&text);
        if entries.is_empty() {
            // No process loaded the library (the program cleared LD_PRELOAD, say): list
            // whatever files appeared.
            let files = written_since(&cfg.out_prefix, started);
            if files.is_empty() {
                return vec![
                    "no process of the run loaded librprof.so (was LD_PRELOAD removed from its environment?)".into(),
                ];
            }
            return files
                .iter()
                .map(|f| format!("wrote {}", f.display()))
                .collect();
        }
        report_lines(&entries, !cfg.programs.is_empty())
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The last line of each pid (a pid that execs writes one per image, the last one counts).
fn parse_ledger(text: &str) -> BTreeMap<u32, Entry> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (Some(&"rprof-ledger-2"), Some(pid)) =
            (f.first(), f.get(1).and_then(|p| p.parse().ok()))
        else {
            continue;
        };
        let program = f.get(2).copied().unwrap_or("?").to_owned();
        let entry = match f.get(3..) {
            Some(["dormant"]) => Entry::Dormant(program),
            Some(["loaded"]) => Entry::Loaded,
            Some([counts, files]) => Entry::Ended {
                program,
                counts: counts
                    .split(' ')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, n)| (k.to_string(), n.parse().unwrap_or(0)))
                    .collect(),
                files: (*files != "-").then(|| files.to_string()),
            },
            _ => continue,
        };
        out.insert(pid, entry);
    }
    out
}

/// One line per process that recorded something; one counting those that recorded
/// nothing; one counting those `--only` left dormant.
fn report_lines(entries: &BTreeMap<u32, Entry>, filtered: bool) -> Vec<String> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut lines = Vec::new();
    let (mut empty, mut dormant, mut unended) = (0, 0, 0);
    for (pid, e) in entries {
        match e {
            Entry::Loaded => unended += 1,
            Entry::Dormant(_) => dormant += 1,
            Entry::Ended {
                program,
                counts,
                files: Some(files),
            } => {
                let shown = Path::new(files)
                    .strip_prefix(&cwd)
                    .map_or(files.clone(), |p| p.display().to_string());
                let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
                lines.push(format!(
                    "{pid} {program}: {} samples: {shown}",
                    counts.join(", ")
                ));
            }
            Entry::Ended { .. } => empty += 1,
        }
    }
    if lines.is_empty() {
        lines.push("no process recorded anything: no profile files written".into());
    }
    if empty > 0 {
        lines.push(format!(
            "{empty} other process{} recorded nothing (no files)",
            if empty == 1 { "" } else { "es" }
        ));
    }
    if unended > 0 {
        lines.push(format!(
            "{unended} process{} ended without rprof's exit hook (killed by SIGKILL, _exit outside a fork child, or a Go program's exit): no files",
            if unended == 1 { "" } else { "es" }
        ));
    }
    if dormant > 0 && filtered {
        lines.push(format!(
            "{dormant} process{} not match --only (RPROF_PROGRAMS): not profiled",
            if dormant == 1 { " did" } else { "es did" }
        ));
    }
    lines
}

/// Profile files `<prefix>.<pid>.<kind>[.<n>].pb.gz` modified since `since`.
fn written_since(prefix: &Path, since: SystemTime) -> Vec<PathBuf> {
    let dir = match prefix.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = prefix
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&format!("{base}.")) else {
                return false;
            };
            let pid_ok = rest
                .split('.')
                .next()
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            pid_ok
                && name.ends_with(".pb.gz")
                && e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since)
        })
        .map(|e| {
            if dir == Path::new(".") {
                PathBuf::from(e.file_name())
            } else {
                e.path()
            }
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_then_the_program_with_or_without_dashes() {
        let a = strings(&["-o", "x", "prog", "-o", "y"]);
        let r = parse(&a).unwrap().unwrap();
        assert_eq!(r.vars, [("RPROF_OUT", "x")]);
        assert_eq!(r.program, strings(&["prog", "-o", "y"]));
        let a = strings(&["--only", "w*", "--", "-weird", "a"]);
        let r = parse(&a).unwrap().unwrap();
        assert_eq!(r.vars, [("RPROF_PROGRAMS", "w*")]);
        assert_eq!(r.program, strings(&["-weird", "a"]));
        assert!(parse(&strings(&["--help"])).unwrap().is_none());
        // Help after the program is the program's.
        let a = strings(&["prog", "--help"]);
        assert_eq!(parse(&a).unwrap().unwrap().program, a);
        assert!(parse(&strings(&["--frob", "prog"])).is_err());
        assert!(parse(&strings(&["--cpu-hz"])).is_err());
        assert!(parse(&strings(&["-o", "x"])).is_err());
    }

    #[test]
    fn elf_interpreters() {
        // This test binary is dynamically linked; a made-up header with no PT_INTERP is not.
        let me = std::env::current_exe().unwrap();
        assert_eq!(kind_of(&me).unwrap(), Kind::Dynamic);
        let mut h = vec![0u8; 0x40 + 56];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[0x20] = 0x40; // phoff
        h[0x36] = 56; // phentsize
        h[0x38] = 1; // phnum
        h[0x40] = 1; // PT_LOAD
        assert_eq!(elf_has_interpreter(&h), Some(false));
        h[0x40] = 3; // PT_INTERP
        assert_eq!(elf_has_interpreter(&h), Some(true));
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn ledger_lines_make_one_report_line_per_recording_process() {
        let text = "rprof-ledger-2\t10\tbash work.sh\tdormant\n\
                    rprof-ledger-2\t11\tsed\t-\t-\n\
                    rprof-ledger-2\t12\tenv\tdormant\n\
                    rprof-ledger-2\t12\tpython3.11 work.py\tcpu=37 heap=12 block=0 mutex=1\t/o/rprof.12.*.pb.gz\n\
                    rprof-ledger-2\t13\tcut\tcpu=0 heap=0\t-\n\
                    rprof-ledger-2\t14\tdash\tloaded\n\
                    garbage\n";
        let e = parse_ledger(text);
        assert_eq!(e.len(), 5);
        let lines = report_lines(&e, true);
        assert_eq!(
            lines,
            [
                "12 python3.11 work.py: 37 cpu, 12 heap, 0 block, 1 mutex samples: /o/rprof.12.*.pb.gz",
                "2 other processes recorded nothing (no files)",
                "1 process ended without rprof's exit hook (killed by SIGKILL, _exit outside a fork child, or a Go program's exit): no files",
                "1 process did not match --only (RPROF_PROGRAMS): not profiled",
            ]
        );
    }
}
