//! The run ledger: when `rprof run` sets `RPROF_RUN_LEDGER`, each process appends one line
//! to that file as it ends (or, if it is not one of `RPROF_PROGRAMS`, as it loads), so that
//! `rprof run` can say which processes recorded what without listing every file.
//!
//! A line is tab-separated: `rprof-ledger-2`, pid, program (its names, space-separated),
//! then `loaded` (as it starts), `dormant`, or what each kind written to files recorded,
//! space-separated `<kind>=<count>` in the kinds' table order (CPU samples, sampled
//! allocations, block and mutex events, …), and the files' pattern (`-` when none was
//! written). One `write(2)` of
//! less than PIPE_BUF bytes to a file opened with O_APPEND: lines of processes ending at
//! once never interleave.
//!
//! A profiled process keeps the ledger open from load (on a descriptor numbered 256 or
//! more, close-on-exec), so that a worker that drops privileges (nginx's run as nobody)
//! can still say what it wrote and where; before each line the descriptor is checked to be
//! that file still (a program that closes its descriptors may have reused the number), and
//! otherwise the ledger is opened again by name.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;

struct Ledger {
    path: Option<PathBuf>,
    program: String,
}

static LEDGER: OnceLock<Ledger> = OnceLock::new();
/// The ledger as opened at load (-1: not kept), with its (device, inode).
static KEPT_FD: AtomicI32 = AtomicI32::new(-1);
static KEPT_DEV: AtomicU64 = AtomicU64::new(0);
static KEPT_INO: AtomicU64 = AtomicU64::new(0);

/// At load: where lines go (None: nowhere) and the program's names.
pub fn init(path: Option<PathBuf>, names: &[String]) {
    let _ = LEDGER.set(Ledger {
        path,
        program: names.join(" "),
    });
}

/// Whether lines are written (checked before one is made).
fn enabled() -> bool {
    LEDGER.get().is_some_and(|l| l.path.is_some())
}

/// The process is profiled from now on (a later `ended` line says what it recorded; none
/// comes from a process killed by SIGKILL, or ending with `_exit` outside a fork child).
pub fn loaded() {
    keep_open();
    append("loaded");
}

/// Opens the ledger now and keeps it, high above the descriptors the program uses.
#[allow(unsafe_code)]
fn keep_open() {
    let Some(Ledger {
        path: Some(path), ..
    }) = LEDGER.get()
    else {
        return;
    };
    let Ok(f) = open(path) else { return };
    use std::os::fd::IntoRawFd;
    let low = f.into_raw_fd();
    // SAFETY: fcntl and close on the descriptor just opened, ours alone.
    let fd = unsafe {
        let high = libc::fcntl(low, libc::F_DUPFD_CLOEXEC, 256);
        libc::close(low);
        high
    };
    if let Some((dev, ino)) = identity(fd) {
        KEPT_DEV.store(dev, Ordering::Relaxed);
        KEPT_INO.store(ino, Ordering::Relaxed);
        KEPT_FD.store(fd, Ordering::Relaxed);
    }
}

/// (device, inode) of what `fd` refers to, if it is open.
#[allow(unsafe_code)]
fn identity(fd: i32) -> Option<(u64, u64)> {
    if fd < 0 {
        return None;
    }
    // SAFETY: stat is plain data; fstat fills it or fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only writes the local `st`.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

fn open(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}

/// Appends one line: through the descriptor kept from load while it is still the ledger,
/// else by name.
#[allow(unsafe_code)]
fn write_line(path: &std::path::Path, line: &str) {
    let fd = KEPT_FD.load(Ordering::Relaxed);
    let kept = (
        KEPT_DEV.load(Ordering::Relaxed),
        KEPT_INO.load(Ordering::Relaxed),
    );
    if fd >= 0 && identity(fd) == Some(kept) {
        // SAFETY: writes the bytes of a live String to the ledger's descriptor.
        unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
        return;
    }
    if let Ok(mut f) = open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// The process is dormant (not one of `RPROF_PROGRAMS`).
pub fn dormant() {
    append("dormant");
}

/// The process ends having recorded `counts` (by kind); its files match `files` (None:
/// none written).
pub fn ended(counts: &[(&str, u64)], files: Option<&str>) {
    if !enabled() {
        return;
    }
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
    let counts = if counts.is_empty() {
        "-".to_string()
    } else {
        counts.join(" ")
    };
    append(&format!("{counts}\t{}", files.unwrap_or("-")));
}

fn append(rest: &str) {
    let Some(Ledger {
        path: Some(path),
        program,
    }) = LEDGER.get()
    else {
        return;
    };
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    let line = format!(
        "rprof-ledger-2\t{}\t{}\t{rest}\n",
        std::process::id(),
        clean(program)
    );
    // The program's own names are cut, not the line, so that it stays one atomic write.
    let line = if line.len() > 4000 {
        format!("rprof-ledger-2\t{}\t?\t{rest}\n", std::process::id())
    } else {
        line
    };
    write_line(path, &line);
}
