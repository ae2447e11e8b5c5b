//! Sources: one file (or folder) per profile kind, each behind [`Kind`], all listed once in
//! [`TABLE`].
//!
//! Contract: a kind records what the hooks and handlers hand it (through `signal_safe`
//! storage), and gives a consistent snapshot of it, taken under its own lock once per
//! dump or request; from a snapshot it makes its profiles (pprof, and Go's debug text
//! where Go has one). It names no consumer: files, HTTP and push loop over `TABLE` and
//! never name a kind. Adding a kind is its own file plus one line in `TABLE`. Imports only
//! `runtime`, `symbols` and `signal_safe`.

use std::any::Any;

use rprof_profile::Profile;

use crate::config::Config;
use crate::signal_safe::lock::RawLock;
use crate::symbols::symbolize::Symbolizer;

pub mod cpu;
pub mod goroutine;
pub mod heap;
mod other_stacks;
pub mod stack;
pub mod threadcreate;
pub mod wait_kinds;
pub mod waits;
pub mod wall;

/// Every kind, in the order files are written, the index lists them and `RPROF_PROFILES`
/// names them.
pub static TABLE: &[&dyn Kind] = &[
    &cpu::CPU,
    &heap::HEAP,
    &wait_kinds::BLOCK,
    &wait_kinds::MUTEX,
    &wall::WALL,
    &goroutine::GOROUTINE,
    &threadcreate::THREADCREATE,
];

/// A kind's snapshot, as the kind itself knows it (consumers only pass it back).
pub type State = Box<dyn Any + Send>;

/// How a kind's profiles relate to time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    /// Events in a window of time (cpu): a file holds what happened since the previous
    /// one, an HTTP request what happens during its `seconds`.
    Window,
    /// Cumulative since the start (heap, block, mutex, threadcreate), as Go's: a file
    /// holds the state as it stands; a delta is the difference of two profiles.
    Cumulative,
    /// What is so now (goroutine): nothing accumulates, nothing is written to files.
    Instant,
}

/// An HTTP path under `/debug/pprof/` that serves a kind, and the sample type its profile
/// shows by default (`allocs` is the heap profile with `alloc_space`, as Go's).
/// Paths named `delta_<kind>` are Pyroscope's: each answer is the change since the
/// previous one. A name that starts with `/` is a whole path of its own (fgprof's
/// `/debug/fgprof`), left out of the index.
pub struct Path {
    pub name: &'static str,
    pub default_sample_type: Option<&'static str>,
    /// The index page's description, where it is not the kind's.
    pub about: Option<&'static str>,
}

/// What a profile needs besides the snapshot.
pub struct Context {
    /// The window's start (Unix ns) and length (ns): for `Window` kinds the time the
    /// difference covers; for the others when the profile is made.
    pub start_unix_ns: i64,
    pub duration_ns: i64,
    /// When this process (or fork child) started, CLOCK_MONOTONIC ns.
    pub process_start_mono_ns: u64,
}

pub trait Kind: Sync {
    /// The name in `RPROF_PROFILES`, in file names and in the run ledger.
    fn name(&self) -> &'static str;
    /// What the profile is, for the index page (as Go's).
    fn about(&self) -> &'static str;
    fn shape(&self) -> Shape;
    /// On when `RPROF_PROFILES` is not set.
    fn on_by_default(&self) -> bool {
        true
    }
    /// Whether `RPROF_PROFILES` can turn it off (goroutine and threadcreate are always
    /// served, as Go's are, and record nothing until asked).
    fn optional(&self) -> bool {
        true
    }
    /// At load: starts recording as `cfg` says, `on` when `RPROF_PROFILES` names the kind
    /// (or by default). Returns whether it records.
    fn init(&self, cfg: &Config, on: bool) -> bool;
    /// Whether it records (after `init`).
    fn enabled(&self) -> bool;
    /// Written to files, counted in the run ledger (goroutine and threadcreate are served
    /// over HTTP only, as Go's are).
    fn in_files(&self) -> bool {
        self.shape() != Shape::Instant
    }
    /// The HTTP paths serving it; the first is the index page's link.
    fn paths(&self) -> &'static [Path];
    /// A consistent reading of everything recorded so far (`allocator_figures`: the
    /// program's allocator may be asked for its own figures, which takes its locks).
    fn snapshot(&self, allocator_figures: bool) -> State;
    /// `Window` kinds: what happened between two snapshots (`before` None: since the
    /// start). Consumers call it for `Window` kinds only.
    fn window(&self, before: Option<&State>, after: &State) -> State {
        let _ = (before, after);
        Box::new(())
    }
    /// Every address on the stacks of a snapshot (or window), to be named in one batch.
    fn addresses(&self, s: &State, out: &mut Vec<u64>);
    /// The profiles a snapshot (or window) becomes, each with the name of its file
    /// (`heap` gives `heap` and, once something was sampled, `heap-peak`).
    fn profiles(
        &self,
        s: &State,
        cx: &Context,
        sym: &mut Symbolizer,
    ) -> Vec<(&'static str, Profile)>;
    /// The main profile of a snapshot (the first of `profiles`), for HTTP.
    fn profile(&self, s: &State, cx: &Context, sym: &mut Symbolizer) -> Profile {
        self.profiles(s, cx, sym)
            .into_iter()
            .next()
            .map(|p| p.1)
            .unwrap_or_default()
    }
    /// Go's text form at `debug` ≥ 1, where Go has one.
    fn text(&self, s: &State, debug: i64, sym: &mut Symbolizer) -> Option<String> {
        let _ = (s, debug, sym);
        None
    }
    /// What a snapshot (or window) holds, counted as the run ledger says it: samples or
    /// events; 0 when nothing was recorded.
    fn recorded(&self, s: &State) -> u64;
    /// Nothing was recorded since the start (checked cheaply, without a snapshot).
    fn is_empty(&self) -> bool;
    /// The index page's count (records in the profile now; None: Go shows none).
    fn count(&self) -> Option<usize>;
    /// Before a dlclose: names the addresses of code that may be unloaded, while mapped.
    fn pin_unloadable(&self, sym: &mut Symbolizer) {
        let _ = sym;
    }
    /// The locks fork's prepare handler holds across fork (so that a child never inherits
    /// one held by a thread it does not have).
    fn fork_locks(&self) -> &'static [&'static dyn RawLock] {
        &[]
    }
    /// In a fork child (one thread): the child's profile starts empty.
    fn reset_after_fork(&self) {}
    /// The program's last thread is exiting: a thread of the kind's own ends first (glibc
    /// ends the process only when no thread is left).
    fn stop_threads(&self) {}
    /// The `__name__` a backend knows the kind's pushed profiles by (Pyroscope's profile
    /// type names: `process_cpu`, `memory`, …); None: not pushed.
    fn push_name(&self) -> Option<&'static str> {
        None
    }
    /// The sample types a delta of the kind's profile (a pushed window, Pyroscope's
    /// `delta_*` paths) keeps as they stand at its end instead of as the change over it
    /// (the heap's `inuse_*`, as Pyroscope's godeltaprof sends them).
    fn delta_as_is(&self) -> &'static [&'static str] {
        &[]
    }
    /// A line for the log at the end of the process, and its level.
    fn summary(&self) -> Option<(crate::config::LogLevel, String)> {
        None
    }
}

/// Downcasts a state to the kind's own type: a state is only ever passed back to the kind
/// that made it.
pub fn state<T: 'static>(s: &State) -> &T {
    s.downcast_ref::<T>()
        .expect("a kind's state passed to another kind")
}

/// At load: turns each kind on or off as `RPROF_PROFILES` says; the warning line for
/// names that are no kind.
pub fn init(cfg: &Config) -> Option<String> {
    let optional: Vec<&dyn Kind> = TABLE.iter().copied().filter(|k| k.optional()).collect();
    let known: Vec<(&str, bool)> = optional
        .iter()
        .map(|k| (k.name(), k.on_by_default()))
        .collect();
    let (on, warning) = cfg.profiles.select(&known);
    for k in TABLE {
        let wanted = !k.optional()
            || optional
                .iter()
                .zip(&on)
                .any(|(o, &on)| on && o.name() == k.name());
        k.init(cfg, wanted);
    }
    warning
}

/// Go's MemStats of the process now (`/debug/vars`), from the heap kind's exact counts,
/// which run whether heap profiling is on or not (`allocator_figures`: the allocator may
/// be asked for its own figures).
pub fn memstats(allocator_figures: bool) -> Vec<(&'static str, u64)> {
    heap::memstats_now(allocator_figures)
}

/// Runs `f` on each kind's fork locks, in the table's order, each lock once (kinds may
/// share one). Allocates nothing: it runs in fork's handlers.
pub fn for_each_fork_lock(mut f: impl FnMut(&'static dyn RawLock)) {
    for (i, k) in TABLE.iter().enumerate() {
        for &l in k.fork_locks() {
            let seen = TABLE[..i].iter().any(|e| {
                e.fork_locks()
                    .iter()
                    .any(|&o| std::ptr::addr_eq(o as *const dyn RawLock, l as *const dyn RawLock))
            });
            if !seen {
                f(l);
            }
        }
    }
}

/// As `for_each_fork_lock`, last lock first (to release them).
pub fn for_each_fork_lock_reversed(mut f: impl FnMut(&'static dyn RawLock)) {
    let mut n = 0;
    for_each_fork_lock(|_| n += 1);
    for i in (0..n).rev() {
        let mut at = 0;
        for_each_fork_lock(|l| {
            if at == i {
                f(l);
            }
            at += 1;
        });
    }
}

#[cfg(test)]
mod tests {
    /// The `rprof` command's list of names (it never loads the library) is this table's.
    #[test]
    fn the_commands_list_of_kinds_is_the_table() {
        let table: Vec<(&str, bool)> = super::TABLE
            .iter()
            .filter(|k| k.optional())
            .map(|k| (k.name(), k.on_by_default()))
            .collect();
        assert_eq!(table, crate::config::KINDS);
    }
}
