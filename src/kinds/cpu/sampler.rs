//! The CPU sampler: per-thread timers, the signal handler and the store it writes.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use crate::runtime::log::{debug, warning};
use crate::signal_safe::cpu_signal::{ACTIVE, SIGNAL};
use crate::signal_safe::lock::store_changed;
use crate::signal_safe::stack_requests;
use crate::signal_safe::trace_store::TraceStore;
use crate::signal_safe::unwind::{self, StackBounds};
use crate::signal_safe::{sys, ErrnoGuard};
use crate::symbols::symbolize::Symbolizer;

/// The sigev_value our timers carry, to tell their signals from any other SIGPROF.
const TIMER_MAGIC: i32 = 0x7270_7266;
const SI_TIMER: i32 = -2;
const SI_KERNEL: i32 = 0x80;
const TIMER_SLOTS: usize = 4096;

/// Set once the process-wide fallback timer is in use.
static USING_ITIMER: AtomicBool = AtomicBool::new(false);
static PERIOD_NS: AtomicU64 = AtomicU64::new(10_000_000);
/// Timer ids + 1 of armed threads; 0 is a free slot.
static TIMERS: [AtomicU64; TIMER_SLOTS] = [const { AtomicU64::new(0) }; TIMER_SLOTS];
/// The thread each slot's timer signals (to create it again on another signal).
static TIMER_TIDS: [AtomicI32; TIMER_SLOTS] = [const { AtomicI32::new(0) }; TIMER_SLOTS];
/// Slots at and above this one were never used: scans stop there, so that pages of the
/// table nobody touched stay untouched (reading one costs a page fault, a short process
/// pays for each, and a fork child for each it writes).
static TIMERS_USED: AtomicUsize = AtomicUsize::new(0);

fn used_timers() -> &'static [AtomicU64] {
    &TIMERS[..TIMERS_USED.load(Ordering::Acquire).min(TIMER_SLOTS)]
}

/// Every CPU sample since load (or fork), folded by stack where it was taken.
pub static STORE: TraceStore = TraceStore::new();
/// Entries of STORE from this one on may hold addresses not yet pinned (see
/// `pin_unloadable`).
static PIN_FROM: AtomicUsize = AtomicUsize::new(0);

/// True while rprof dumps on the program's only thread (no collector thread): the samples
/// its timer takes meanwhile are rprof's, not the program's, and are dropped.
static OWN_WORK: AtomicBool = AtomicBool::new(false);

/// Async-signal-safe. Marks the start (true) and end of rprof's own work on a program
/// thread.
#[inline(always)]
pub fn own_work(on: bool) {
    OWN_WORK.store(on, Ordering::Release);
}

/// Signals handled and the samples they stood for (1 + overruns), for the log.
static SIGNALS: AtomicU64 = AtomicU64::new(0);
static WEIGHT: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's slot in TIMERS + 1 (0: none).
    static TIMER_SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Prepares sampling at `hz`. Not signal-safe; call once at load before arming threads.
pub fn init(hz: u32) -> bool {
    if !STORE.init() {
        warning!("cannot map the sample store; CPU profiling is off");
        return false;
    }
    PERIOD_NS.store(1_000_000_000 / u64::from(hz.max(1)), Ordering::Relaxed);
    ACTIVE.store(true, Ordering::Release);
    true
}

/// The signal the timers deliver while CPU profiling runs; 0 when it does not.
/// Async-signal-safe.
pub fn signal_in_use() -> i32 {
    if ACTIVE.load(Ordering::Acquire) {
        SIGNAL.load(Ordering::Acquire)
    } else {
        0
    }
}

pub fn period_ns() -> u64 {
    PERIOD_NS.load(Ordering::Relaxed)
}

/// The CPU signal's handler. Async-signal-safe: it walks the stack straight into the
/// store, and answers a stack request waiting for this thread's tick. A signal that is not
/// a timer's (`kill -PROF`, the program's own `setitimer`) gets the action the program
/// set, as without rprof.
// In the section of `on_exit`: that page is then resident at exit (see lib.rs).
#[link_section = ".text.hot.rprof_sample"]
pub extern "C" fn on_cpu_signal(sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let _errno = ErrnoGuard::new();
    // SAFETY: the kernel passes a valid siginfo to a SA_SIGINFO handler.
    let Some(weight) = (unsafe { sample_weight(info) }) else {
        drop(_errno);
        crate::runtime::signals::foreign_signal(sig);
        return;
    };
    if !ACTIVE.load(Ordering::Acquire) || uc.is_null() {
        return;
    }
    if OWN_WORK.load(Ordering::Relaxed) {
        return; // rprof's own dump on the program's only thread: not the program's CPU
    }
    SIGNALS.fetch_add(1, Ordering::Relaxed);
    WEIGHT.fetch_add(u64::from(weight), Ordering::Relaxed);
    // SAFETY: uc is the ucontext the kernel passed to this SA_SIGINFO handler.
    let (_, sp) = unsafe { unwind::pc_sp_from_ucontext(uc) };
    let stack = stack_above(sp);
    STORE.record(
        u64::from(weight),
        sys::thread_name(),
        sys::gettid(),
        |pcs| {
            // SAFETY: as above.
            let w = unsafe { unwind::walk_ucontext(uc, stack, stack_floor(), pcs) };
            (w.depth, w.truncated)
        },
    );
    // Stack requests (the wall sampler's, a goroutine dump's) are answered by the ticks of
    // the threads asked.
    if stack_requests::pending() {
        // SAFETY: as above.
        unsafe { answer_request(uc) };
    }
}

/// A stack request: this thread's interrupted stack, into the asker's slot. Out of line,
/// so that its registers are not in the sampling path's frame.
///
/// # Safety
/// `uc` must be the ucontext the kernel passed to this SA_SIGINFO handler.
#[inline(never)]
unsafe fn answer_request(uc: *mut libc::c_void) {
    // SAFETY: as the caller guarantees.
    let regs = unsafe { unwind::regs_from_ucontext(uc) };
    stack_requests::answer(&regs, interrupted_stack(&regs), stack_floor());
}

/// The lowest address the stack this handler runs on may use (0: not known).
/// Async-signal-safe.
fn stack_floor() -> u64 {
    let probe = 0u8;
    crate::signal_safe::thread_stacks::floor_of(std::ptr::addr_of!(probe) as u64)
}

/// The span of this thread's stack above the interrupted stack pointer. Async-signal-safe.
fn interrupted_stack(regs: &unwind::Regs) -> Option<StackBounds> {
    stack_above(regs.0[7]?)
}

/// The span of this thread's stack from `sp` up. Async-signal-safe.
fn stack_above(sp: u64) -> Option<StackBounds> {
    crate::signal_safe::thread_stacks::stack_bounds()
        .and_then(|b| (sp >= b.lo && sp < b.hi).then_some(StackBounds::live(sp, b.hi)))
}

/// The number of periods a SIGPROF stands for, or None if it is not from our timers.
///
/// # Safety
/// `info` must be the siginfo the kernel passed to a SA_SIGINFO handler.
unsafe fn sample_weight(info: *const libc::siginfo_t) -> Option<u32> {
    if info.is_null() {
        return None;
    }
    let code = (*info).si_code;
    if code == SI_TIMER {
        // For POSIX timers the union holds { int si_tid; int si_overrun; sigval si_value; }
        // at offset 16 on 64-bit Linux.
        let base = info as *const u8;
        let overrun = std::ptr::read_unaligned(base.add(20) as *const i32);
        let value = std::ptr::read_unaligned(base.add(24) as *const i32);
        if value != TIMER_MAGIC {
            return None;
        }
        return Some(1 + overrun.max(0) as u32);
    }
    (code == SI_KERNEL && USING_ITIMER.load(Ordering::Relaxed)).then_some(1)
}

/// Arms a CPU timer for the calling thread. Not signal-safe (called at load, from the
/// pthread_create trampoline, in a fork child).
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
pub fn arm_current_thread() {
    if !ACTIVE.load(Ordering::Acquire) {
        return;
    }
    // Before the timer: its first signal may land on a nearly full stack.
    crate::signal_safe::alt_stack::give_current_thread();
    let me = sys::gettid();
    let _arming = Arming::take();
    // A scan (`arm_unknown_threads`) may have found this thread first: its timer is kept.
    let slot = slot_of(me).or_else(|| arm(libc::CLOCK_THREAD_CPUTIME_ID, me));
    TIMER_SLOT.with(|t| t.set(slot.map_or(0, |s| s + 1)));
}

/// Held while a thread's timer is looked for and made, so that a thread and a scan never
/// both make one for it (a spin: both sides are short and never wait on anything else).
static ARMING: AtomicBool = AtomicBool::new(false);
struct Arming;
impl Arming {
    fn take() -> Arming {
        while ARMING
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        Arming
    }
}
impl Drop for Arming {
    fn drop(&mut self) {
        ARMING.store(false, Ordering::Release);
    }
}

/// The slot of the live timer that signals thread `tid`.
fn slot_of(tid: i32) -> Option<usize> {
    used_timers()
        .iter()
        .zip(&TIMER_TIDS)
        .position(|(t, id)| t.load(Ordering::Acquire) != 0 && id.load(Ordering::Acquire) == tid)
}

/// Threads found since load (or fork) that rprof did not see start: made through a
/// `pthread_create` found past the interposer (`dlsym(RTLD_NEXT)`, as jemalloc's
/// background threads are), or with a raw `clone`.
static FOUND_LATER: AtomicUsize = AtomicUsize::new(0);

/// Arms a timer for each of the program's threads that has none (rprof's own left out),
/// and deletes the timers of threads found this way that have ended. Run by rprof's thread
/// (5 times a second while the timers run). Not signal-safe.
pub fn arm_unknown_threads() {
    if !ACTIVE.load(Ordering::Acquire) || USING_ITIMER.load(Ordering::Acquire) {
        return;
    }
    let _arming = Arming::take();
    // Listed under the lock: a thread that armed itself before it is in the list.
    let tids = crate::runtime::threads::task_ids();
    for &tid in &tids {
        if !crate::runtime::own_threads::is_own(tid)
            && slot_of(tid).is_none()
            && arm(thread_clock(tid), tid).is_some()
        {
            FOUND_LATER.fetch_add(1, Ordering::Relaxed);
        }
    }
    for (slot, (t, id)) in used_timers().iter().zip(&TIMER_TIDS).enumerate() {
        if t.load(Ordering::Acquire) != 0 && !tids.contains(&id.load(Ordering::Acquire)) {
            delete_slot(slot);
        }
    }
}

/// Threads found by `arm_unknown_threads` since load (or fork).
pub fn threads_found_later() -> usize {
    FOUND_LATER.load(Ordering::Relaxed)
}

/// Arms timers for the threads other than the caller that exist at load (`others`). They
/// get no stack span (it cannot be learned from outside the thread), so their samples hold
/// the leaf only.
pub fn arm_other_threads(others: &[i32]) {
    if !ACTIVE.load(Ordering::Acquire) {
        return;
    }
    for &tid in others {
        arm(thread_clock(tid), tid);
    }
}

/// Creates and starts a timer on `clock` signalling thread `tid`; returns its table slot.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
fn arm(clock: libc::clockid_t, tid: i32) -> Option<usize> {
    let sig = SIGNAL.load(Ordering::Acquire);
    let Some(timer) = create_timer(clock, tid, sig) else {
        let err = std::io::Error::last_os_error();
        fallback_to_itimer(&err);
        return None;
    };
    let id = timer as u64 + 1;
    let slot = TIMERS.iter().position(|t| {
        t.compare_exchange(0, id, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    });
    match slot {
        Some(i) => {
            TIMER_TIDS[i].store(tid, Ordering::Release);
            TIMERS_USED.fetch_max(i + 1, Ordering::AcqRel);
            if SIGNAL.load(Ordering::Acquire) != sig {
                // The timers moved while this one was made: it moves too.
                move_slot(i, SIGNAL.load(Ordering::Acquire));
            }
        }
        None => {
            debug!("timer table full; thread {tid}'s timer is deleted only when the process ends")
        }
    }
    slot
}

/// The kernel's CPU clock of thread `tid`: MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED).
fn thread_clock(tid: i32) -> libc::clockid_t {
    (!tid << 3) | 2 | 4
}

/// Creates and starts a timer on `clock` that sends `sig` to thread `tid` every period,
/// first after a random fraction of one.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
fn create_timer(clock: libc::clockid_t, tid: i32, sig: i32) -> Option<libc::timer_t> {
    // SAFETY: sigevent is plain data; zero is a valid initial value.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = libc::SIGEV_THREAD_ID;
    sev.sigev_signo = sig;
    sev.sigev_notify_thread_id = tid;
    sev.sigev_value = libc::sigval {
        sival_ptr: TIMER_MAGIC as usize as *mut libc::c_void,
    };
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: timer_create reads `sev` and writes the new id into `timer`.
    if unsafe { libc::timer_create(clock, &mut sev, &mut timer) } != 0 {
        return None;
    }
    let period = period_ns();
    let first = 1 + random(tid as u64) % period;
    let spec = libc::itimerspec {
        it_interval: timespec(period),
        it_value: timespec(first),
    };
    // SAFETY: `timer` was just created; spec is a valid itimerspec.
    unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) };
    Some(timer)
}

/// Moves every timer to `sig` (the program took the current signal for itself). False
/// when they cannot move (the process-wide fallback timer always sends SIGPROF). Signals
/// of the old timers already on their way are not recalled.
pub fn move_to(sig: i32) -> bool {
    if USING_ITIMER.load(Ordering::Acquire) {
        return false;
    }
    SIGNAL.store(sig, Ordering::Release);
    for slot in 0..used_timers().len() {
        move_slot(slot, sig);
    }
    true
}

/// Replaces slot `slot`'s timer by one that sends `sig` to the same thread (none if the
/// thread has exited). Racing movers and the thread's own exit each take the slot's old
/// id at most once.
fn move_slot(slot: usize, sig: i32) {
    let old = TIMERS[slot].load(Ordering::Acquire);
    if old == 0 {
        return;
    }
    let tid = TIMER_TIDS[slot].load(Ordering::Acquire);
    let Some(new) = create_timer(thread_clock(tid), tid, sig) else {
        return; // the thread is gone; its exit frees the slot
    };
    let new_id = new as u64 + 1;
    let moved = TIMERS[slot]
        .compare_exchange(old, new_id, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok();
    let dead = if moved { old } else { new_id };
    // SAFETY: `dead` is a timer this function owns now: the old one taken out of the
    // slot by the exchange, or the new one that lost the race to another mover.
    unsafe { libc::timer_delete((dead - 1) as libc::timer_t) };
}

fn fallback_to_itimer(err: &std::io::Error) {
    if USING_ITIMER.swap(true, Ordering::AcqRel) {
        return;
    }
    warning!("timer_create failed ({err}); falling back to one process-wide setitimer, which undercounts busy threads");
    let period = timespec(period_ns());
    let tv = libc::timeval {
        tv_sec: period.tv_sec,
        tv_usec: period.tv_nsec / 1000,
    };
    let it = libc::itimerval {
        it_interval: tv,
        it_value: tv,
    };
    // SAFETY: setitimer reads a valid itimerval.
    unsafe { libc::setitimer(libc::ITIMER_PROF, &it, std::ptr::null_mut()) };
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// A cheap random number (splitmix64 over the clock and a seed); not for cryptography.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
fn random(seed: u64) -> u64 {
    let mut z = cycles() ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fast-changing number to seed `random`: the time-stamp counter where there is one (a
/// fork child reading the vDSO clock takes a page fault for it).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
fn cycles() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn cycles() -> u64 {
    sys::monotonic_ns()
}

fn delete_slot(slot: usize) {
    if let Some(t) = TIMERS.get(slot).filter(|t| t.load(Ordering::Relaxed) != 0) {
        let id = t.swap(0, Ordering::AcqRel);
        if id != 0 {
            // SAFETY: id - 1 is a timer created by `arm` and not yet deleted (the swap above
            // makes this the only deleter).
            unsafe { libc::timer_delete((id - 1) as libc::timer_t) };
        }
    }
}

/// The calling thread is exiting: its timer goes.
pub fn disarm_current_thread() {
    let slot = TIMER_SLOT.with(|t| t.replace(0));
    if slot > 0 {
        delete_slot(slot - 1);
    }
    crate::signal_safe::alt_stack::take_back_current_thread();
}

/// Stops sampling: no more records, every timer deleted. Used at exit and when the program
/// installs its own SIGPROF handler.
pub fn stop() {
    ACTIVE.store(false, Ordering::Release);
    for slot in 0..used_timers().len() {
        delete_slot(slot);
    }
    if USING_ITIMER.load(Ordering::Acquire) {
        let zero = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
        };
        // SAFETY: setitimer reads a valid itimerval.
        unsafe { libc::setitimer(libc::ITIMER_PROF, &zero, std::ptr::null_mut()) };
    }
}

/// (signals delivered, samples they stood for) since load or fork.
pub fn signal_counts() -> (u64, u64) {
    (
        SIGNALS.load(Ordering::Relaxed),
        WEIGHT.load(Ordering::Relaxed),
    )
}

/// In a fork child: the parent's timers do not exist here (POSIX timers are not inherited),
/// so the table is cleared without deleting, and the store forgets the parent's samples.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
pub fn reset_after_fork() {
    // Only slots in use are written (a page written in a fork child is copied).
    for t in used_timers()
        .iter()
        .filter(|t| t.load(Ordering::Relaxed) != 0)
    {
        t.store(0, Ordering::Relaxed);
    }
    store_changed!(SIGNALS, 0);
    store_changed!(WEIGHT, 0);
    store_changed!(FOUND_LATER, 0);
    // Held by a thread of the parent that does not exist here.
    store_changed!(ARMING, false);
    STORE.reset_after_fork();
    store_changed!(PIN_FROM, STORE.first());
    store_changed!(OWN_WORK, false);
}

/// Key of one aggregated CPU sample: the stack (leaf first; addresses, or pinned frame
/// ids for code that has been unloaded), whether it was cut at the maximum depth, and the
/// thread's name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub pcs: Vec<u64>,
    pub truncated: bool,
    pub thread: String,
    /// Kernel thread id (0: not known).
    pub tid: i32,
}

/// A reading of the CPU source: the cumulative count of every store entry (by index) and
/// of lost samples. Readings only grow; the difference of two is the window between them.
#[derive(Default, Clone)]
pub struct CpuSnapshot {
    counts: Vec<u64>,
    lost: u64,
}

impl CpuSnapshot {
    /// No sample was ever counted (nor lost).
    pub fn is_empty(&self) -> bool {
        self.lost == 0 && self.counts.iter().all(|&n| n == 0)
    }
}

/// Reads the CPU source now. Not for signal context.
pub fn snapshot() -> CpuSnapshot {
    snapshot_of(&STORE)
}

/// Reads `store` (the CPU source's, or a test's).
pub fn snapshot_of(store: &TraceStore) -> CpuSnapshot {
    let mut counts = Vec::with_capacity(store.len());
    store.for_each(0, |i, _, n| {
        counts.resize(i, 0);
        counts.push(n);
    });
    CpuSnapshot {
        counts,
        lost: store.lost(),
    }
}

/// The samples of one window, folded by stack.
#[derive(Default)]
pub struct CpuData {
    pub counts: HashMap<StackKey, u64>,
    pub lost: u64,
}

/// The samples taken between two readings (`before` taken first).
pub fn window(before: &CpuSnapshot, after: &CpuSnapshot) -> CpuData {
    window_of(&STORE, before, after)
}

/// The samples of `store` between two of its readings.
pub fn window_of(store: &TraceStore, before: &CpuSnapshot, after: &CpuSnapshot) -> CpuData {
    let mut data = CpuData {
        counts: HashMap::new(),
        lost: after.lost.saturating_sub(before.lost),
    };
    store.for_each(0, |i, trace, _| {
        let now = after.counts.get(i).copied().unwrap_or(0);
        let then = before.counts.get(i).copied().unwrap_or(0);
        if now <= then {
            return;
        }
        let len = trace.thread_name.iter().position(|&b| b == 0).unwrap_or(16);
        let key = StackKey {
            pcs: trace.pcs.to_vec(),
            truncated: trace.truncated,
            thread: String::from_utf8_lossy(&trace.thread_name[..len]).into_owned(),
            tid: trace.tid,
        };
        // Two entries may hold one trace (a race between writers, or pinning): merged here.
        *data.counts.entry(key).or_insert(0) += now - then;
    });
    data
}

/// Before a dlclose: names the addresses in objects that may be unmapped, in entries not
/// pinned before, while they are still mapped (pinning replaces each by a frame id).
pub fn pin_unloadable(symbolizer: &mut Symbolizer) {
    let from = PIN_FROM.load(Ordering::Relaxed);
    let upto = STORE.len();
    let mut addrs = Vec::new();
    STORE.for_each(from, |_, trace, _| {
        addrs.extend(
            trace
                .pcs
                .iter()
                .copied()
                .filter(|&pc| crate::symbols::symbolize::needs_pinning(pc)),
        );
    });
    if !addrs.is_empty() {
        addrs.sort_unstable();
        addrs.dedup();
        let ids = symbolizer.pin(addrs);
        STORE.rewrite(from, |pc| ids.get(&pc).copied());
    }
    PIN_FROM.store(upto, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(store: &TraceStore, pc: u64, weight: u64) {
        store.record(weight, *b"t\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 0, |pcs| {
            pcs[0] = pc;
            (1, false)
        });
    }

    fn total(w: &CpuData, pc: u64) -> u64 {
        w.counts
            .iter()
            .filter(|(k, _)| k.pcs == [pc])
            .map(|(_, &n)| n)
            .sum()
    }

    /// Two consumers keep their own readings: each window holds exactly the samples taken
    /// between its two readings, however the windows overlap, and neither disturbs the
    /// other (nothing is drained).
    #[test]
    fn overlapping_windows_of_two_consumers_are_each_right() {
        let store = TraceStore::new();
        assert!(store.init());
        let (a, b) = (0xa000_0001, 0xa000_0002);
        let files_start = snapshot_of(&store);
        record(&store, a, 3);
        let http_start = snapshot_of(&store);
        record(&store, a, 2);
        record(&store, b, 5);
        let files_end = snapshot_of(&store);
        record(&store, b, 7);
        let http_end = snapshot_of(&store);
        let files = window_of(&store, &files_start, &files_end);
        let http = window_of(&store, &http_start, &http_end);
        assert_eq!((total(&files, a), total(&files, b)), (5, 5));
        assert_eq!((total(&http, a), total(&http, b)), (2, 12));
        // A window from the first reading to the last covers all of it once.
        let all = window_of(&store, &files_start, &http_end);
        assert_eq!((total(&all, a), total(&all, b)), (5, 12));
        assert_eq!(
            window_of(&store, &http_end, &snapshot_of(&store))
                .counts
                .len(),
            0
        );
    }
}
