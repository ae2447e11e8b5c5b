//! The wall kind: every thread of the program sampled at a fixed rate of wall time,
//! running or blocked (async-profiler's wall mode, Go's fgprof), so that time spent
//! waiting (I/O, sleeps, poll, futex locks that never pass through pthread) shows where
//! it is spent. Opt-in (`RPROF_PROFILES=…,wall`): it needs a thread of rprof's own.
//!
//! Each tick (`RPROF_WALL_HZ`, default 20 a second, and then stretched so that the sampler
//! uses at most 1 % of a core: about 12 µs a thread a tick here, so 200 threads are sampled
//! about 4 times a second) the sampler thread reads each program thread's
//! /proc/self/task/<tid>/syscall:
//! - a thread blocked in the kernel is never signalled: the line gives its system call,
//!   stack pointer and pc; its stack is copied (process_vm_readv) and walked from there.
//!   When the line is the same as at the previous tick (same call, arguments, stack pointer
//!   and pc), the thread is taken to be in the same wait and the stack walked then is
//!   counted again, without a copy: an idle thread costs one small read a tick. In code
//!   built with frame pointers, whose callers' CFA is rbp-based, rbp is found on the copy
//!   (`unwind::find_frame_pointer`);
//! - a thread running user code is never signalled either (a signal sent to a thread seen
//!   running can reach it once it has gone into a wait, and cut it short): its stack is
//!   asked of its next CPU timer tick (`stack_requests::ask_quietly`), which lands only
//!   while it runs, within `ANSWER_NS`. A thread that did not tick by then and is now in
//!   the kernel is sampled as blocked there; one still running has no stack in that
//!   sample. Without CPU profiling (no timers) running threads' samples have no stack.
//!
//! Samples carry the labels `thread`, `thread_id` and `state` (`running`, or the system
//! call the thread is blocked in); values samples/count and wall/nanoseconds, a sample
//! standing for the wall time since the previous tick. The counts
//! are cumulative; a file or an HTTP window is the difference of two snapshots, as CPU's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use rprof_profile::{names, Builder, Profile};

use super::other_stacks::{blocked_stack, program_threads, syscall_name, StackRead, COPY_BYTES};
use super::{state, Context, Kind, Path, Shape, State};
use crate::config::Config;
use crate::runtime::log::warning;
use crate::signal_safe::lock::{Lock, RawLock};
use crate::signal_safe::{cpu_signal, stack_requests, sys};
use crate::symbols::encode::StackEncoder;
use crate::symbols::symbolize::Symbolizer;

pub struct Wall;
pub static WALL: Wall = Wall;

static ON: AtomicBool = AtomicBool::new(false);
/// At the default rate: ticks are stretched to keep the sampler under 1 % of a core.
static BUDGETED: AtomicBool = AtomicBool::new(false);
static PERIOD_NS: AtomicU64 = AtomicU64::new(0);
/// The process whose sampler thread runs (0: none); a fork child starts its own.
static SAMPLER_OF: AtomicI32 = AtomicI32::new(0);
/// Asks the sampler to end (the program's last thread is exiting).
static STOP: AtomicBool = AtomicBool::new(false);
static SAMPLER: AtomicU64 = AtomicU64::new(0);
/// The sampler's CPU time so far (ns), and the first tick's (walking every stack once).
static SAMPLER_CPU: AtomicU64 = AtomicU64::new(0);
static FIRST_TICK_CPU: AtomicU64 = AtomicU64::new(0);

/// A blocked thread's stack is first walked over this much of a copy; a walk that does not
/// reach the thread's start is tried again over `COPY_BYTES`.
const FIRST_COPY: u64 = 64 << 10;
/// How long a running thread has to answer a stack request (two CPU ticks at 100 Hz).
const ANSWER_NS: u64 = 20_000_000;
/// Distinct (stack, thread, state) records kept; beyond that, samples are counted as lost.
const MAX_RECORDS: usize = 1 << 16;
/// Thread names are read again every this many ticks; a thread seen for the first time,
/// after 1, 2, 4, … ticks up to that (a new thread commonly names itself as it starts,
/// perhaps after the tick that first saw it).
const NAME_TICKS: u64 = 64;

/// One record: a stack, the thread that was in it, and the thread's state.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub stack: Arc<[u64]>,
    pub truncated: bool,
    pub tid: i32,
    pub thread: Arc<str>,
    pub state: Arc<str>,
}

/// Samples counted since the start (or the fork); a window is the difference of two.
#[derive(Clone, Default)]
pub struct Counts {
    /// Per record: (samples, the wall time they stand for in ns).
    pub samples: HashMap<Key, (u64, u64)>,
    /// Samples not kept (the table was full), and their ns.
    pub lost: (u64, u64),
    /// Samples whose stack could not be walked to the thread's start.
    pub unfinished: u64,
    /// Ticks taken, and the wall time between them (ns).
    pub ticks: u64,
    pub tick_ns: u64,
}

static TABLE: Lock<Option<Counts>> = Lock::new(None);

impl Kind for Wall {
    fn name(&self) -> &'static str {
        "wall"
    }
    fn about(&self) -> &'static str {
        "Wall-clock profile of every thread, running or waiting (labels thread, thread_id, state). You can specify the duration in the seconds GET parameter."
    }
    fn shape(&self) -> Shape {
        Shape::Window
    }
    fn push_name(&self) -> Option<&'static str> {
        Some("wall")
    }
    fn on_by_default(&self) -> bool {
        false
    }
    fn init(&self, cfg: &Config, on: bool) -> bool {
        if !on {
            return false;
        }
        PERIOD_NS.store(
            1_000_000_000 / u64::from(cfg.wall_hz.max(1)),
            Ordering::Relaxed,
        );
        BUDGETED.store(cfg.wall_hz_default, Ordering::Relaxed);
        *TABLE.lock() = Some(Counts::default());
        ON.store(true, Ordering::Release);
        start_sampler();
        true
    }
    fn enabled(&self) -> bool {
        ON.load(Ordering::Acquire)
    }
    fn paths(&self) -> &'static [Path] {
        &[
            Path {
                name: "wall",
                default_sample_type: None,
                about: None,
            },
            // fgprof's path, where Go programs serve their wall-clock profile.
            Path {
                name: "/debug/fgprof",
                default_sample_type: None,
                about: None,
            },
        ]
    }
    fn snapshot(&self, _allocator_figures: bool) -> State {
        Box::new(TABLE.lock().clone().unwrap_or_default())
    }
    fn window(&self, before: Option<&State>, after: &State) -> State {
        let empty = Counts::default();
        let before = before.map_or(&empty, |b| state::<Counts>(b));
        let after = state::<Counts>(after);
        let mut w = Counts {
            samples: HashMap::new(),
            lost: (
                after.lost.0.saturating_sub(before.lost.0),
                after.lost.1.saturating_sub(before.lost.1),
            ),
            unfinished: after.unfinished.saturating_sub(before.unfinished),
            ticks: after.ticks.saturating_sub(before.ticks),
            tick_ns: after.tick_ns.saturating_sub(before.tick_ns),
        };
        for (k, &(n, ns)) in &after.samples {
            let (then, then_ns) = before.samples.get(k).copied().unwrap_or((0, 0));
            if n > then {
                w.samples
                    .insert(k.clone(), (n - then, ns.saturating_sub(then_ns)));
            }
        }
        Box::new(w)
    }
    fn addresses(&self, s: &State, out: &mut Vec<u64>) {
        out.extend(
            state::<Counts>(s)
                .samples
                .keys()
                .flat_map(|k| k.stack.iter().copied()),
        );
    }
    fn profiles(
        &self,
        s: &State,
        cx: &Context,
        sym: &mut Symbolizer,
    ) -> Vec<(&'static str, Profile)> {
        vec![("wall", wall_profile(state::<Counts>(s), cx, sym))]
    }
    fn recorded(&self, s: &State) -> u64 {
        let c = state::<Counts>(s);
        c.samples.values().map(|v| v.0).sum::<u64>() + c.lost.0
    }
    fn is_empty(&self) -> bool {
        TABLE
            .lock()
            .as_ref()
            .is_none_or(|t| t.samples.is_empty() && t.lost.0 == 0)
    }
    fn count(&self) -> Option<usize> {
        None
    }
    fn fork_locks(&self) -> &'static [&'static dyn RawLock] {
        static LOCKS: [&dyn RawLock; 1] = [&TABLE];
        &LOCKS
    }
    #[allow(unsafe_code)]
    fn reset_after_fork(&self) {
        if !self.enabled() {
            return;
        }
        // SAFETY: called from fork's child handler only, with one thread.
        let table = unsafe { TABLE.in_fork_child() };
        if table.as_ref().is_some_and(|t| !t.samples.is_empty()) {
            // Left behind, not freed: the time taken does not depend on the parent's history.
            std::mem::forget(table.replace(Counts::default()));
        }
        // The parent's sampler thread does not exist here.
        STOP.store(false, Ordering::Relaxed);
        start_sampler();
    }
    fn stop_threads(&self) {
        stop_sampler();
    }
    fn summary(&self) -> Option<(crate::config::LogLevel, String)> {
        let ticks = TABLE.lock().as_ref().map_or(0, |t| t.ticks);
        self.enabled().then(|| {
            (
                crate::config::LogLevel::Info,
                format!(
                    "wall: {ticks} ticks, the sampler's CPU {:.1} ms (the first tick, which walks every stack, {:.1} ms)",
                    SAMPLER_CPU.load(Ordering::Relaxed) as f64 / 1e6,
                    FIRST_TICK_CPU.load(Ordering::Relaxed) as f64 / 1e6
                ),
            )
        })
    }
}

/// The wall profile in the CPU profile's shape: samples/count and wall/nanoseconds, period
/// the tick; labels `thread`, `state` and the numeric `thread_id`.
fn wall_profile(c: &Counts, cx: &Context, symbolizer: &mut Symbolizer) -> Profile {
    let period = PERIOD_NS.load(Ordering::Relaxed) as i64;
    let b = Builder::new(
        &[(names::SAMPLES, names::COUNT), ("wall", names::NANOSECONDS)],
        ("wall", names::NANOSECONDS),
        period,
    );
    let mut enc = StackEncoder::for_stacks(b, c.samples.keys().map(|k| &k.stack[..]), symbolizer);
    enc.builder().set_time(cx.start_unix_ns, cx.duration_ns);
    let mut samples: Vec<_> = c.samples.iter().collect();
    samples.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then_with(|| a.0.tid.cmp(&b.0.tid)));
    let unknown = (!c.samples.keys().all(|k| !k.stack.is_empty()))
        .then(|| enc.builder().synthetic_location("rprof::stack_not_taken"));
    for (key, &(n, ns)) in samples {
        let ids = match unknown {
            Some(u) if key.stack.is_empty() => vec![u],
            _ => enc.stack(&key.stack, key.truncated),
        };
        enc.builder().add_sample(
            ids,
            vec![n as i64, ns as i64],
            &[("thread", &*key.thread), ("state", &*key.state)],
            &[("thread_id", i64::from(key.tid), "")],
        );
    }
    if c.unfinished > 0 {
        enc.builder().add_comment(&format!(
            "rprof: {} sample(s) have a stack that could not be walked to the thread's start (a running thread that did not answer, or without CPU profiling's handler; a frame no unwind table or frame pointer describes)",
            c.unfinished
        ));
    }
    if let Some(mean) = c.tick_ns.checked_div(c.ticks) {
        if mean as f64 > 1.5 * period as f64 {
            enc.builder().add_comment(&format!(
                "rprof: {} ticks, one every {:.1} ms on average (RPROF_WALL_HZ asks {:.1} ms): {}",
                c.ticks,
                mean as f64 / 1e6,
                period as f64 / 1e6,
                if BUDGETED.load(Ordering::Relaxed) {
                    "stretched to keep the sampler under 1 % of a core, or late"
                } else {
                    "the sampler was late"
                }
            ));
        }
    }
    if c.lost.0 > 0 {
        let lost = enc.builder().synthetic_location(names::LOST_SAMPLES_FRAME);
        enc.builder()
            .add_sample(vec![lost], vec![c.lost.0 as i64, c.lost.1 as i64], &[], &[]);
    }
    enc.finish()
}

/// Starts this process's sampler thread (once per process).
fn start_sampler() {
    let me = sys::getpid();
    if SAMPLER_OF.swap(me, Ordering::AcqRel) == me {
        return;
    }
    match crate::runtime::own_threads::spawn(c"rprof-wall", run) {
        Ok(t) => SAMPLER.store(t + 1, Ordering::Release),
        Err(e) => {
            SAMPLER_OF.store(0, Ordering::Release);
            warning!(
                "cannot start the wall-clock sampler's thread ({}); no wall profile",
                std::io::Error::from_raw_os_error(e)
            );
        }
    }
}

/// Ends the sampler thread and waits for it (the program's last thread is exiting).
fn stop_sampler() {
    let t = SAMPLER.swap(0, Ordering::AcqRel);
    if t == 0 {
        return;
    }
    STOP.store(true, Ordering::Release);
    crate::signal_safe::real::pthread_join((t - 1) as libc::pthread_t);
    SAMPLER_OF.store(0, Ordering::Release);
}

/// What the sampler remembers of a thread from one tick to the next.
struct Seen {
    /// Its syscall line at the last tick it was blocked.
    line: Vec<u8>,
    state: String,
    stack: Option<StackRead>,
    name: String,
    named_at: u64,
    /// Ticks from `named_at` to the next read of the name.
    name_gap: u64,
    /// Its record while it stays in the same wait (made again when the line changes).
    key: Option<Key>,
}

impl Seen {
    /// The record of a thread blocked at (nr, sp, pc), per its syscall `line`: its stack is
    /// walked again only when the line changed since it was last walked.
    fn blocked(&mut self, tid: i32, line: &Line, nr: i64, sp: u64, pc: u64) -> (Key, bool) {
        if self.line != line.bytes() {
            self.line.clear();
            self.line.extend_from_slice(line.bytes());
            self.state = if nr >= 0 {
                syscall_name(nr)
            } else {
                "running".to_string()
            };
            self.stack = walk_blocked(pc, sp);
            self.key = None;
        }
        let finished = self.stack.as_ref().is_some_and(|r| r.finished);
        let k = self
            .key
            .get_or_insert_with(|| key(tid, &self.name, &self.state, self.stack.as_ref()))
            .clone();
        (k, finished)
    }
}

fn run() {
    let period = PERIOD_NS.load(Ordering::Relaxed).max(1);
    let budgeted = BUDGETED.load(Ordering::Relaxed);
    let mut seen: HashMap<i32, Seen> = HashMap::new();
    let mut last = sys::monotonic_ns();
    let mut next = last + period;
    let mut tick = 0u64;
    while !STOP.load(Ordering::Acquire) {
        sleep_until(next);
        if STOP.load(Ordering::Acquire) {
            break;
        }
        // Each sample stands for the wall time since the previous tick.
        let now = sys::monotonic_ns();
        let weight = now.saturating_sub(last);
        last = now;
        tick += 1;
        let cpu = thread_cpu_ns();
        let records = sample_all(&mut seen, tick);
        if let Some(t) = TABLE.lock().as_mut() {
            t.ticks += 1;
            t.tick_ns += weight;
            for (key, finished) in records {
                if !finished {
                    t.unfinished += 1;
                }
                let full = t.samples.len() >= MAX_RECORDS;
                match t.samples.get_mut(&key) {
                    Some(v) => {
                        v.0 += 1;
                        v.1 += weight;
                    }
                    None if full => {
                        t.lost.0 += 1;
                        t.lost.1 += weight;
                    }
                    None => {
                        t.samples.insert(key, (1, weight));
                    }
                }
            }
        }
        // At the default rate, the next tick comes later when this one cost more than
        // 0.8 % of the time to it (many threads): the sampler stays under 1 % of a core.
        let cost = thread_cpu_ns().saturating_sub(cpu);
        SAMPLER_CPU.fetch_add(cost, Ordering::Relaxed);
        if tick == 1 {
            FIRST_TICK_CPU.store(cost, Ordering::Relaxed);
        }
        let gap = if budgeted {
            period.max(cost.saturating_mul(125))
        } else {
            period
        };
        next = (next + gap).max(now + gap / 2);
    }
}

/// The calling thread's CPU time (ns).
#[allow(unsafe_code)]
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until CLOCK_MONOTONIC reads `at` (ns).
#[allow(unsafe_code)]
fn sleep_until(at: u64) {
    let ts = libc::timespec {
        tv_sec: (at / 1_000_000_000) as libc::time_t,
        tv_nsec: (at % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: an absolute sleep on the monotonic clock; an interruption only wakes it early
    // (every signal is blocked in rprof's threads anyway).
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

/// Where /proc says a thread is.
enum Where {
    /// On a CPU in user code.
    Running,
    /// In the kernel: the system call (-1: none, the thread was preempted in user code),
    /// stack pointer and pc.
    In(i64, u64, u64),
}

/// A thread's /proc syscall line, read with three system calls and no allocation: it is
/// read for every thread at every tick.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[allow(unsafe_code)]
fn read_line(tid: i32) -> Option<Line> {
    use std::io::Write as _;
    let mut path = [0u8; 48];
    let mut w = std::io::Cursor::new(&mut path[..]);
    write!(w, "/proc/self/task/{tid}/syscall\0").ok()?;
    // SAFETY: `path` holds a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut line = Line {
        buf: [0; 256],
        len: 0,
    };
    // SAFETY: reads at most the buffer's length into it, then closes the fd opened above.
    let n = unsafe {
        let n = libc::read(fd, line.buf.as_mut_ptr().cast(), line.buf.len());
        libc::close(fd);
        n
    };
    line.len = usize::try_from(n).ok()?;
    Some(line)
}

/// Where a syscall line says the thread is.
fn parse_where(line: &[u8]) -> Option<Where> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_whitespace();
    let first = words.next()?;
    if first == "running" {
        return Some(Where::Running);
    }
    let nr: i64 = first.parse().ok()?;
    let hex = |w: &str| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok();
    // The last two words are the stack pointer and the pc.
    let mut last = [""; 2];
    for w in words {
        last = [last[1], w];
    }
    Some(Where::In(nr, hex(last[0])?, hex(last[1])?))
}

fn read_where(tid: i32) -> Option<(Line, Where)> {
    let line = read_line(tid)?;
    let at = parse_where(line.bytes())?;
    Some((line, at))
}

fn thread_name(tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// One tick: a record of every program thread, with whether its stack is whole.
fn sample_all(seen: &mut HashMap<i32, Seen>, tick: u64) -> Vec<(Key, bool)> {
    let tids = program_threads();
    seen.retain(|tid, _| tids.binary_search(tid).is_ok());
    let sig = cpu_signal::in_use();
    let can_ask = sig != 0 && crate::runtime::signals::ours_installed(sig);
    let mut out = Vec::with_capacity(tids.len());
    let mut running = Vec::new();
    for tid in tids {
        let Some((line, at)) = read_where(tid) else {
            continue; // gone
        };
        let s = seen.entry(tid).or_insert_with(|| Seen {
            line: Vec::new(),
            state: String::new(),
            stack: None,
            name: thread_name(tid),
            named_at: tick,
            name_gap: 1,
            key: None,
        });
        if tick.saturating_sub(s.named_at) >= s.name_gap {
            let name = thread_name(tid);
            if name != s.name {
                s.name = name;
                s.key = None;
            }
            s.named_at = tick;
            s.name_gap = (s.name_gap * 2).min(NAME_TICKS);
        }
        match at {
            Where::Running if can_ask => running.push(tid),
            Where::Running => out.push((key(tid, &s.name, "running", None), false)),
            Where::In(nr, sp, pc) => out.push(s.blocked(tid, &line, nr, sp, pc)),
        }
    }
    for batch in running.chunks(stack_requests::SLOTS) {
        // No signal is sent (one could reach a thread that has gone into the kernel since,
        // and cut its wait short): each answers at its next CPU timer tick.
        let answers = stack_requests::ask_quietly(batch, ANSWER_NS);
        for (tid, a) in batch.iter().zip(answers) {
            if a.stack.is_none() {
                // No tick: it may have gone into the kernel meanwhile.
                if let (Some((line, Where::In(nr, sp, pc))), Some(s)) =
                    (read_where(*tid), seen.get_mut(tid))
                {
                    out.push(s.blocked(*tid, &line, nr, sp, pc));
                    continue;
                }
            }
            let name = seen.get(tid).map_or(String::new(), |s| s.name.clone());
            // Running again: the next blocked tick walks its stack anew.
            if let Some(s) = seen.get_mut(tid) {
                s.line.clear();
                s.key = None;
            }
            let read = a.stack.map(|(pcs, truncated)| StackRead {
                pcs,
                truncated,
                finished: a.finished,
            });
            let finished = read.as_ref().is_some_and(|r| r.finished);
            out.push((key(*tid, &name, "running", read.as_ref()), finished));
        }
    }
    out
}

/// A blocked thread's stack, over a short copy first, then a long one if the walk ran
/// off the short copy's end.
fn walk_blocked(pc: u64, sp: u64) -> Option<StackRead> {
    let first = blocked_stack(pc, sp, FIRST_COPY);
    if first.as_ref().is_some_and(|r| r.finished || r.truncated) {
        return first;
    }
    blocked_stack(pc, sp, COPY_BYTES).or(first)
}

fn key(tid: i32, name: &str, state: &str, stack: Option<&StackRead>) -> Key {
    Key {
        stack: stack.map_or_else(|| Arc::from([]), |r| Arc::from(r.pcs.as_slice())),
        truncated: stack.is_some_and(|r| r.truncated),
        tid,
        thread: Arc::from(name),
        state: Arc::from(state),
    }
}
