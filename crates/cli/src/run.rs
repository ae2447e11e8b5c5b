//! `rprof run`: start a program with librprof.so preloaded, pass signals on, exit as it did,
//! then list the profile files written.
#![allow(unsafe_code)]

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::SystemTime;

use crate::parse_args;

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
];

/// librprof.so: $RPROF_LIB, else beside this executable, else under ./target/{release,debug}.
pub fn find_library() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("RPROF_LIB") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("RPROF_LIB={} is not a file", p.display()))
        };
    }
    let mut tried = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        tried.push(dir.join("librprof.so"));
    }
    tried.push(PathBuf::from("target/release/librprof.so"));
    tried.push(PathBuf::from("target/debug/librprof.so"));
    for p in &tried {
        if p.is_file() {
            return std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
        }
    }
    Err(format!(
        "librprof.so not found (looked at {}); build it with `cargo build --release` or set RPROF_LIB",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    ))
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

pub fn main(args: &[String]) -> Result<ExitCode, String> {
    let split = args.iter().position(|a| a == "--");
    let (opts, program) = match split {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (&args[..0], args),
    };
    let names: Vec<&str> = OPTIONS.iter().map(|(o, _)| *o).collect();
    let parsed = parse_args(opts, &names, &[])?;
    if !parsed.positional.is_empty() {
        return Err(format!(
            "unexpected {:?} before `--`; usage: rprof run [options] -- PROGRAM [ARGS...]",
            parsed.positional[0]
        ));
    }
    let Some((prog, prog_args)) = program.split_first() else {
        return Err("no program given; usage: rprof run [options] -- PROGRAM [ARGS...]".into());
    };
    let lib = find_library()?;
    let mut cmd = Command::new(prog);
    cmd.args(prog_args);
    let preload = match std::env::var("LD_PRELOAD") {
        Ok(existing) if !existing.is_empty() => format!("{}:{existing}", lib.display()),
        _ => lib.display().to_string(),
    };
    cmd.env("LD_PRELOAD", preload);
    for (opt, var) in OPTIONS {
        if let Some(v) = parsed.value(opt) {
            cmd.env(var, v);
        }
    }
    let prefix = parsed
        .value("-o")
        .map(str::to_owned)
        .or_else(|| std::env::var("RPROF_OUT").ok())
        .unwrap_or_else(|| "rprof".into());
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
    for f in written_since(&prefix, started) {
        eprintln!("rprof: wrote {}", f.display());
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

/// Profile files `<prefix>.<pid>.<kind>[.<n>].pb.gz` modified since `since`.
fn written_since(prefix: &str, since: SystemTime) -> Vec<PathBuf> {
    let prefix = Path::new(prefix);
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
