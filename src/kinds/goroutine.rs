//! The goroutine kind: each program thread's id, name, state and current stack, on
//! request (Go's goroutine profile: a native program's goroutines are its threads).
//!
//! A thread blocked in the kernel is not disturbed: /proc/<tid>/syscall gives its stack
//! and instruction pointers, and its stack is copied (process_vm_readv, which cannot fault)
//! and walked from there. A thread running user code answers at its next CPU timer tick
//! (`signal_safe::stack_requests`); no signal is sent, since one sent to a thread seen
//! running may reach it once it has gone to sleep and make its nanosleep or poll return
//! early (100 dumps of threads that switch between short waits: 32 EINTRs, before). One
//! that does not tick in time is read again: by then it may be blocked. rprof's own
//! threads are left out.

use rprof_profile::Profile;

use super::other_stacks::{
    blocked, program_threads, state_name, syscall_name, Blocked, COPY_BYTES,
};
use super::{state, Context, Kind, Path, Shape, State};
use crate::config::Config;
use crate::signal_safe::lock::Lock;
use crate::signal_safe::stack_requests;
use crate::symbols::encode::{count_profile, count_text, grouped, json_string};
use crate::symbols::symbolize::Symbolizer;

/// How long running threads have to answer: at least this, and three CPU timer periods.
const ANSWER_NS: u64 = 200_000_000;
/// At most this, whatever the CPU rate.
const ANSWER_MAX_NS: u64 = 2_000_000_000;
/// Running threads that have not answered are read again after this.
const ROUND_NS: u64 = 10_000_000;

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

pub struct Goroutine;
pub static GOROUTINE: Goroutine = Goroutine;

/// The records of a capture: threads with the same stack and name, counted.
fn records(threads: &[ThreadInfo]) -> Vec<(Vec<u64>, String, u64)> {
    grouped(
        threads
            .iter()
            .map(|t| (t.stack.as_slice(), t.name.as_str(), 1)),
    )
}

impl Kind for Goroutine {
    fn name(&self) -> &'static str {
        "goroutine"
    }
    fn about(&self) -> &'static str {
        "Stack traces of all current threads (a native program's goroutines). Use debug=2 as a query parameter to export in the same format as an unrecovered panic."
    }
    fn shape(&self) -> Shape {
        Shape::Instant
    }
    fn optional(&self) -> bool {
        false
    }
    fn init(&self, _cfg: &Config, _on: bool) -> bool {
        true
    }
    fn enabled(&self) -> bool {
        true
    }
    fn in_files(&self) -> bool {
        false
    }
    fn paths(&self) -> &'static [Path] {
        &[Path {
            name: "goroutine",
            default_sample_type: None,
            about: None,
        }]
    }
    fn snapshot(&self, _allocator_figures: bool) -> State {
        Box::new(capture())
    }
    fn addresses(&self, s: &State, out: &mut Vec<u64>) {
        out.extend(
            state::<Vec<ThreadInfo>>(s)
                .iter()
                .flat_map(|t| t.stack.iter().copied()),
        );
    }
    fn profiles(
        &self,
        s: &State,
        _cx: &Context,
        sym: &mut Symbolizer,
    ) -> Vec<(&'static str, Profile)> {
        let records = records(state::<Vec<ThreadInfo>>(s));
        vec![("goroutine", count_profile("goroutine", &records, sym))]
    }
    fn text(&self, s: &State, debug: i64, sym: &mut Symbolizer) -> Option<String> {
        let threads = state::<Vec<ThreadInfo>>(s);
        Some(if debug >= 2 {
            thread_dump_text(threads, sym)
        } else {
            count_text("goroutine", &records(threads), sym)
        })
    }
    fn recorded(&self, s: &State) -> u64 {
        state::<Vec<ThreadInfo>>(s).len() as u64
    }
    fn is_empty(&self) -> bool {
        false
    }
    fn count(&self) -> Option<usize> {
        Some(program_threads().len())
    }
    #[allow(unsafe_code)]
    fn reset_after_fork(&self) {
        // A capture on a thread of the parent's (absent here) is over.
        // SAFETY: fork's child handler, on the only thread.
        unsafe { ONE.reset_in_fork_child() };
    }
}

/// `goroutine?debug=2`: a block per thread, as Go's full goroutine dump: `goroutine <tid>
/// [<state>, thread "<name>"]:`, then per frame `function(...)` and `\t<file>:<line>
/// +<offset>`.
fn thread_dump_text(threads: &[ThreadInfo], s: &mut Symbolizer) -> String {
    use std::fmt::Write as _;
    let frames = s.resolve_all(threads.iter().flat_map(|t| t.stack.iter().copied()));
    let mut out = String::new();
    for t in threads {
        let _ = writeln!(
            out,
            "goroutine {} [{}, thread {}]:",
            t.tid,
            t.state,
            json_string(&t.name)
        );
        for f in crate::symbols::encode::text_frames(&t.stack, &frames) {
            let _ = match f.line {
                Some(l) => {
                    let file = if l.filename.is_empty() {
                        "?"
                    } else {
                        &l.filename
                    };
                    writeln!(
                        out,
                        "{}(...)\n\t{file}:{} +{:#x}",
                        l.function, l.line, f.offset
                    )
                }
                None => writeln!(out, "?(...)\n\t? pc={:#x}", f.address),
            };
        }
        if t.truncated {
            out.push_str("...additional frames elided...\n");
        }
        if let Some(why) = t.why {
            let _ = writeln!(out, "\t(no stack: {why})");
        }
        out.push('\n');
    }
    out
}

/// Held by a capture: one at a time.
static ONE: Lock<()> = Lock::new(());

/// Every program thread's stack now. One capture at a time. Not for signal context.
pub fn capture() -> Vec<ThreadInfo> {
    let _one = ONE.lock();
    // Running threads answer at their CPU timers' ticks, which rprof's handler takes.
    let sig = crate::signal_safe::cpu_signal::in_use();
    let ticks = sig != 0 && crate::runtime::signals::ours_installed(sig);
    let mut out = Vec::new();
    let mut running = Vec::new();
    for tid in program_threads() {
        let task = format!("/proc/self/task/{tid}");
        let name = std::fs::read_to_string(format!("{task}/comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        let mut info = ThreadInfo {
            tid,
            name,
            state: state_now(&task),
            stack: Vec::new(),
            truncated: false,
            why: None,
        };
        match blocked(&task, COPY_BYTES) {
            Blocked::Running if ticks => {
                info.state = "running".into();
                running.push(out.len());
            }
            Blocked::Running => {
                info.state = "running".into();
                info.why = Some("running, and CPU profiling is off: no timer tick to answer");
            }
            blocked => fill_blocked(&mut info, blocked),
        }
        out.push(info);
    }
    // In rounds: a thread that has not ticked by the end of one is read again, and one
    // gone to sleep since is read where it waits (threads that run in short bursts between
    // waits seldom tick, and need not hold the dump up for the whole time).
    let timeout = (3 * crate::kinds::cpu::period_ns()).clamp(ANSWER_NS, ANSWER_MAX_NS);
    let deadline = crate::signal_safe::sys::monotonic_ns() + timeout;
    while !running.is_empty() {
        let now = crate::signal_safe::sys::monotonic_ns();
        let last = now + ROUND_NS >= deadline;
        let round = if last {
            deadline.saturating_sub(now)
        } else {
            ROUND_NS
        };
        let mut still = Vec::new();
        for batch in running.chunks(stack_requests::SLOTS) {
            let tids: Vec<i32> = batch.iter().map(|&i| out[i].tid).collect();
            for (&i, a) in batch.iter().zip(stack_requests::ask_quietly(&tids, round)) {
                if let Some((stack, truncated)) = a.stack {
                    out[i].stack = stack;
                    out[i].truncated = truncated;
                    continue;
                }
                let task = format!("/proc/self/task/{}", out[i].tid);
                match blocked(&task, COPY_BYTES) {
                    b @ (Blocked::In(..) | Blocked::Unknown(_)) => {
                        out[i].state = state_now(&task);
                        fill_blocked(&mut out[i], b);
                    }
                    Blocked::Running if last => {
                        out[i].why = Some("running, and no CPU timer tick came in time");
                    }
                    Blocked::Running => still.push(i),
                }
            }
        }
        running = still;
    }
    out
}

/// A thread's state now, as its /proc `task` directory's stat says it.
fn state_now(task: &str) -> String {
    let c = std::fs::read_to_string(format!("{task}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
        .unwrap_or('?');
    state_name(c).to_string()
}

/// `info` of a thread read blocked in the kernel (or not read: why).
fn fill_blocked(info: &mut ThreadInfo, b: Blocked) {
    match b {
        Blocked::In(syscall, stack) => {
            if let Some(n) = syscall {
                info.state = format!("{}, in {}", info.state, syscall_name(n));
            }
            match stack {
                Some(read) => {
                    info.stack = read.pcs;
                    info.truncated = read.truncated;
                }
                None => info.why = Some("its stack could not be read"),
            }
        }
        Blocked::Unknown(why) => info.why = Some(why),
        Blocked::Running => {}
    }
}
