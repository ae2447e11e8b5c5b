//! The stacks of the program's other threads, read without disturbing them: a thread
//! blocked in the kernel gives its stack and instruction pointers in /proc/<tid>/syscall,
//! and its stack is copied (process_vm_readv, which cannot fault) and walked from there.
//! Shared by the goroutine and wall kinds.

use crate::signal_safe::unwind::{self, StackBounds, MAX_DEPTH};

/// How much of a blocked thread's stack the goroutine dump copies to walk it.
pub const COPY_BYTES: u64 = 512 << 10;

pub enum Blocked {
    /// On a CPU, in user code: only a signal can get its stack.
    Running,
    /// In the kernel (in that system call, if any), with its stack walked from there.
    In(Option<i64>, Option<StackRead>),
    Unknown(&'static str),
}

/// Reads /proc/<tid>/syscall and, for a thread in the kernel, walks its stack; the same
/// line and the same count of context switches after the walk say the thread did not run
/// meanwhile (else retried: a thread that woke up has changed the stack the copy was taken
/// of, even when it went back to sleep at the very same place, as a thread waiting again
/// for a contended lock does).
pub fn blocked(task: &str, copy_bytes: u64) -> Blocked {
    let read = || {
        let mut s = std::fs::read_to_string(format!("{task}/syscall")).unwrap_or_default();
        s.push_str(&switches(task));
        s
    };
    let hex = |w: &str| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok();
    for _ in 0..8 {
        let line = read();
        let words: Vec<&str> = line
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let (nr, sp, pc) = match words.as_slice() {
            ["running"] => return Blocked::Running,
            [nr, .., sp, pc] if words.len() >= 3 => (nr.parse::<i64>().ok(), hex(sp), hex(pc)),
            _ => return Blocked::Unknown("/proc gave no registers"),
        };
        let (Some(sp), Some(pc)) = (sp, pc) else {
            return Blocked::Unknown("its registers could not be read");
        };
        let stack = blocked_stack(pc, sp, copy_bytes);
        if read() == line {
            return Blocked::In(nr.filter(|&n| n >= 0), stack);
        }
    }
    Blocked::Unknown("it kept waking up while its stack was read")
}

/// The thread's voluntary and involuntary context switches so far, from its status file:
/// they change whenever it has run.
pub fn switches(task: &str) -> String {
    std::fs::read_to_string(format!("{task}/status"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The program's threads (rprof's own left out), in id order.
pub fn program_threads() -> Vec<i32> {
    let mut tids = crate::runtime::threads::task_ids();
    tids.retain(|&t| !crate::runtime::own_threads::is_own(t));
    tids.sort_unstable();
    tids
}

/// A stack walked over a copy: leaf first, cut at the maximum depth (`truncated`), or
/// whole down to the thread's outermost frame (`finished`).
pub struct StackRead {
    pub pcs: Vec<u64>,
    pub truncated: bool,
    pub finished: bool,
}

/// Walks the stack of a thread stopped in the kernel at (pc, sp), over a copy of at most
/// `copy_bytes` of it.
pub fn blocked_stack(pc: u64, sp: u64, copy_bytes: u64) -> Option<StackRead> {
    let copy = copy_stack(sp, copy_bytes);
    if copy.len() < 8 {
        return None;
    }
    let bounds = StackBounds {
        lo: sp,
        hi: sp + copy.len() as u64,
        copy: copy.as_ptr(),
    };
    let mut pcs = [0u64; MAX_DEPTH];
    let w = unwind::walk(&unwind::regs_at(pc, sp), Some(bounds), 0, &mut pcs);
    Some(StackRead {
        pcs: pcs[..w.depth].to_vec(),
        truncated: w.truncated,
        finished: w.finished,
    })
}

const PAGE: u64 = 4096;

/// Copies at most `max` bytes of our own memory from `sp` up, without faulting
/// (process_vm_readv, one element a page, so that the copy stops at the end of the stack's
/// mapping rather than failing whole).
#[allow(unsafe_code)]
fn copy_stack(sp: u64, max: u64) -> Vec<u8> {
    let mut buf = vec![0u8; max as usize];
    let mut remote = Vec::with_capacity((max / PAGE + 2) as usize);
    let end = sp.saturating_add(max);
    let mut at = sp;
    while at < end {
        let next = ((at / PAGE) + 1) * PAGE;
        let len = next.min(end) - at;
        remote.push(libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: len as usize,
        });
        at += len;
    }
    let mut done = 0usize;
    // At most IOV_MAX (1024) elements a call.
    for chunk in remote.chunks(1024) {
        let want: usize = chunk.iter().map(|v| v.iov_len).sum();
        let local = libc::iovec {
            iov_base: buf[done..].as_mut_ptr().cast(),
            iov_len: want,
        };
        // SAFETY: process_vm_readv writes at most `want` bytes into buf[done..], which
        // holds them, and reports an unreadable source instead of faulting.
        let n = unsafe {
            libc::process_vm_readv(
                libc::getpid(),
                &local,
                1,
                chunk.as_ptr(),
                chunk.len() as u64,
                0,
            )
        };
        let n = usize::try_from(n).unwrap_or(0);
        done += n;
        if n < want {
            break;
        }
    }
    buf.truncate(done);
    buf
}

pub fn state_name(c: char) -> &'static str {
    match c {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk sleep",
        'T' => "stopped",
        't' => "tracing stop",
        'Z' => "zombie",
        'I' => "idle",
        _ => "unknown",
    }
}

/// The name of x86_64 system call `n` ("syscall N" for a number the kernel headers do
/// not name).
pub fn syscall_name(n: i64) -> String {
    usize::try_from(n)
        .ok()
        .and_then(|i| crate::symbols::syscall_names::NAMES.get(i))
        .filter(|name| !name.is_empty())
        .map_or_else(|| format!("syscall {n}"), |name| (*name).to_owned())
}
