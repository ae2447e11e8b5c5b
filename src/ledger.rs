//! The run ledger: when `rprof run` sets `RPROF_RUN_LEDGER`, each process appends one line
//! to that file as it ends (or, if it is not one of `RPROF_PROGRAMS`, as it loads), so that
//! `rprof run` can say which processes recorded what without listing every file.
//!
//! A line is tab-separated: `rprof-ledger-1`, pid, program (its names, space-separated),
//! then `loaded` (as it starts), `dormant`, or the CPU samples, sampled allocations, block events and mutex
//! events recorded, and the files' pattern (`-` when none was written). One `write(2)` of
//! less than PIPE_BUF bytes to a file opened with O_APPEND: lines of processes ending at
//! once never interleave.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

struct Ledger {
    path: Option<PathBuf>,
    program: String,
}

static LEDGER: OnceLock<Ledger> = OnceLock::new();

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

/// What a process recorded, per kind.
#[derive(Default, Clone, Copy, Debug)]
pub struct Recorded {
    pub cpu: u64,
    pub heap: u64,
    pub block: u64,
    pub mutex: u64,
}

/// The process is profiled from now on (a later `ended` line says what it recorded; none
/// comes from a process killed by SIGKILL, or ending with `_exit` outside a fork child).
pub fn loaded() {
    append("loaded");
}

/// The process is dormant (not one of `RPROF_PROGRAMS`).
pub fn dormant() {
    append("dormant");
}

/// The process ends having recorded `r`; its files match `files` (None: none written).
pub fn ended(r: Recorded, files: Option<&str>) {
    if !enabled() {
        return;
    }
    append(&format!(
        "{}\t{}\t{}\t{}\t{}",
        r.cpu,
        r.heap,
        r.block,
        r.mutex,
        files.unwrap_or("-")
    ));
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
        "rprof-ledger-1\t{}\t{}\t{rest}\n",
        std::process::id(),
        clean(program)
    );
    // The program's own names are cut, not the line, so that it stays one atomic write.
    let line = if line.len() > 4000 {
        format!("rprof-ledger-1\t{}\t?\t{rest}\n", std::process::id())
    } else {
        line
    };
    let file = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path);
    if let Ok(mut f) = file {
        let _ = f.write_all(line.as_bytes());
    }
}
