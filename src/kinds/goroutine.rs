//! The threads source: each program thread's id, name, state and current stack, on
//! request (Go's goroutine profile: a native program's goroutines are its threads).
//!
//! A thread blocked in the kernel is not disturbed: /proc/<tid>/syscall gives its stack
//! and instruction pointers, and its stack is copied (process_vm_readv, which cannot fault)
//! and walked from there. Only a thread running user code is interrupted, once, by rprof's
//! SIGPROF handler (`signal_safe::stack_requests`): a signal would make a sleeping thread's
//! nanosleep or poll return early. rprof's own threads are left out.

use crate::signal_safe::lock::Lock;
use crate::signal_safe::stack_requests;
use crate::signal_safe::unwind::{self, StackBounds, MAX_DEPTH};

/// How much of a blocked thread's stack is copied to walk it.
const COPY_BYTES: u64 = 512 << 10;
/// How long running threads have to answer.
const ANSWER_NS: u64 = 200_000_000;

pub struct ThreadInfo {
    pub tid: i32,
    pub name: String,
    /// Go-style, e.g. `running`, `sleeping, in futex`.
    pub state: String,
    /// Leaf first; empty when it could not be had (`why`).
    pub stack: Vec<u64>,
    pub truncated: bool,
    pub why: Option<&'static str>,
}

/// Every program thread's stack now. One capture at a time. Not for signal context.
pub fn capture() -> Vec<ThreadInfo> {
    static ONE: Lock<()> = Lock::new(());
    let _one = ONE.lock();
    let sig = crate::kinds::cpu::signal_in_use();
    let signal_ok = sig != 0 && crate::runtime::signals::ours_installed(sig);
    let mut out = Vec::new();
    let mut running = Vec::new();
    for tid in program_threads() {
        let task = format!("/proc/self/task/{tid}");
        let name = std::fs::read_to_string(format!("{task}/comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        let state_char = std::fs::read_to_string(format!("{task}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
            .unwrap_or('?');
        let mut info = ThreadInfo {
            tid,
            name,
            state: state_name(state_char).to_string(),
            stack: Vec::new(),
            truncated: false,
            why: None,
        };
        match blocked(&task) {
            Blocked::Running if signal_ok => {
                info.state = "running".into();
                running.push(out.len());
            }
            Blocked::Running => {
                info.state = "running".into();
                info.why = Some("running, and rprof's CPU signal handler is not installed");
            }
            Blocked::In(syscall, stack) => {
                if let Some(n) = syscall {
                    info.state = format!("{}, in {}", info.state, syscall_name(n));
                }
                match stack {
                    Some((stack, truncated)) => {
                        info.stack = stack;
                        info.truncated = truncated;
                    }
                    None => info.why = Some("its stack could not be read"),
                }
            }
            Blocked::Unknown(why) => info.why = Some(why),
        }
        out.push(info);
    }
    for batch in running.chunks(stack_requests::SLOTS) {
        let tids: Vec<i32> = batch.iter().map(|&i| out[i].tid).collect();
        for (&i, a) in batch.iter().zip(stack_requests::ask(&tids, sig, ANSWER_NS)) {
            match a.stack {
                Some((stack, truncated)) => {
                    out[i].stack = stack;
                    out[i].truncated = truncated;
                }
                None => out[i].why = Some("it did not answer (signals blocked?)"),
            }
        }
    }
    out
}

enum Blocked {
    /// On a CPU, in user code: only a signal can get its stack.
    Running,
    /// In the kernel (in that system call, if any), with its stack walked from there.
    In(Option<i64>, Option<(Vec<u64>, bool)>),
    Unknown(&'static str),
}

/// Reads /proc/<tid>/syscall and, for a thread in the kernel, walks its stack; the same
/// line and the same count of context switches after the walk say the thread did not run
/// meanwhile (else retried: a thread that woke up has changed the stack the copy was taken
/// of, even when it went back to sleep at the very same place, as a thread waiting again
/// for a contended lock does).
fn blocked(task: &str) -> Blocked {
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
        let stack = blocked_stack(pc, sp);
        if read() == line {
            return Blocked::In(nr.filter(|&n| n >= 0), stack);
        }
    }
    Blocked::Unknown("it kept waking up while its stack was read")
}

/// The thread's voluntary and involuntary context switches so far, from its status file:
/// they change whenever it has run.
fn switches(task: &str) -> String {
    std::fs::read_to_string(format!("{task}/status"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The program's threads (rprof's own left out), in id order.
fn program_threads() -> Vec<i32> {
    let mut tids = crate::runtime::threads::task_ids();
    tids.retain(|&t| !crate::runtime::own_threads::is_own(t));
    tids.sort_unstable();
    tids
}

/// Walks the stack of a thread stopped in the kernel at (pc, sp), over a copy of it.
fn blocked_stack(pc: u64, sp: u64) -> Option<(Vec<u64>, bool)> {
    let (_, end) = crate::symbols::maps::mapping_containing(sp)?;
    let len = end.checked_sub(sp)?.min(COPY_BYTES) as usize;
    let mut copy = vec![0u8; len];
    let n = read_own_memory(sp, &mut copy);
    if n < 8 {
        return None;
    }
    let bounds = StackBounds {
        lo: sp,
        hi: sp + n as u64,
        copy: copy.as_ptr(),
    };
    let mut pcs = [0u64; MAX_DEPTH];
    let w = unwind::walk(&unwind::regs_at(pc, sp), Some(bounds), 0, &mut pcs);
    Some((pcs[..w.depth].to_vec(), w.truncated))
}

/// Copies our own memory at `addr` into `buf` without faulting (process_vm_readv);
/// returns how many bytes were read.
#[allow(unsafe_code)]
fn read_own_memory(addr: u64, buf: &mut [u8]) -> usize {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: process_vm_readv writes at most buf.len() bytes into `buf` and reports an
    // unreadable source instead of faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    usize::try_from(n).unwrap_or(0)
}

fn state_name(c: char) -> &'static str {
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
fn syscall_name(n: i64) -> String {
    usize::try_from(n)
        .ok()
        .and_then(|i| crate::symbols::syscall_names::NAMES.get(i))
        .filter(|name| !name.is_empty())
        .map_or_else(|| format!("syscall {n}"), |name| (*name).to_owned())
}
