//! Consumers: what takes the kinds' profiles out of the process. `files` writes them at
//! exit, at the dump signal and at a fatal one (`collector` is the thread that runs those
//! dumps); `http` and `http_pages` serve them as Go's net/http/pprof does; `ledger` tells
//! `rprof run` what each process recorded.
//!
//! Contract: a consumer loops over `kinds::TABLE` and never names a kind; it takes each
//! kind's snapshot through [`collect`], once per dump or request, and names every address
//! of one collection in one batch ([`name_all`]). Consumers are listed once in
//! [`CONSUMERS`]. Imports `kinds`, `runtime`, `symbols` and `signal_safe`.

use rprof_profile::Profile;

use crate::config::Config;
use crate::kinds::{Kind, Shape, State};
use crate::symbols::symbolize::Symbolizer;

pub mod collector;
pub mod files;
pub mod http;
pub mod http_pages;
pub mod ledger;
pub mod push;

pub use files::Ending;

/// A way profiles leave the process.
pub trait Consumer: Sync {
    fn name(&self) -> &'static str;
    /// At load: starts as `cfg` says. Returns whether it needs rprof's own thread (its
    /// work then moves there, as in any process with threads).
    fn start(&self, cfg: &Config) -> bool;
    /// In a fork child: whether it runs there too (and needs rprof's thread).
    fn reset_after_fork(&self) -> bool {
        false
    }
    /// The process is ending (`ending`): what is left goes out now, within a bound.
    fn finish(&self, ending: Ending) {
        let _ = ending;
    }
    /// The program's last thread is exiting: a thread of the consumer's own ends.
    fn stop_threads(&self) {}
}

/// Every consumer, started in this order.
pub static CONSUMERS: &[&dyn Consumer] = &[&files::FILES, &http::HTTP, &push::PUSH];

/// The end of the process (exit, or a fatal signal): every consumer's last output, the
/// files first.
pub fn finish(ending: Ending) {
    for c in CONSUMERS {
        c.finish(ending);
    }
}

/// The program's last thread is exiting: the consumers' threads end.
pub fn stop_threads() {
    for c in CONSUMERS {
        c.stop_threads();
    }
}

/// The one collection step: a snapshot of each of `kinds`, each taken once, under its
/// own lock (`allocator_figures`: the program's allocator may be asked for its own).
pub fn collect(
    kinds: impl Iterator<Item = &'static dyn Kind>,
    allocator_figures: bool,
) -> Vec<(&'static dyn Kind, State)> {
    kinds.map(|k| (k, k.snapshot(allocator_figures))).collect()
}

/// Names every address of a collection in one batch: each object's symbol table is read
/// once.
pub fn name_all(taken: &[(&'static dyn Kind, State)], symbolizer: &mut Symbolizer) {
    let mut addrs = Vec::new();
    for (k, s) in taken {
        k.addresses(s, &mut addrs);
    }
    addrs.sort_unstable();
    addrs.dedup();
    symbolizer.resolve_all(addrs);
}

/// A consumer's own windows: each `Window` kind's snapshot at the consumer's previous
/// output, so that its next output is the difference (each consumer keeps its own, and
/// none disturbs another's).
#[derive(Default)]
pub struct Windows(Vec<(&'static str, State)>);

impl Windows {
    /// `now` as the kind's next output: for a `Window` kind, the window since the previous
    /// one (`advance`: `now` starts the next window; else the next covers this one again);
    /// for the others, `now` itself.
    pub fn next(&mut self, k: &'static dyn Kind, now: State, advance: bool) -> State {
        if k.shape() != Shape::Window {
            return now;
        }
        let at = self.0.iter().position(|b| b.0 == k.name());
        let window = k.window(at.map(|i| &self.0[i].1), &now);
        if advance {
            match at {
                Some(i) => self.0[i].1 = now,
                None => self.0.push((k.name(), now)),
            }
        }
        window
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// A consumer's own deltas of cumulative profiles: each kind's profile at the consumer's
/// previous output, so that the next output is the change since then, except the sample
/// types the kind keeps as they stand (`Kind::delta_as_is`: the heap's in-use figures).
pub struct Changes(Vec<(&'static str, Profile)>);

impl Changes {
    pub const fn new() -> Self {
        Changes(Vec::new())
    }

    /// The change of `k`'s profile since the previous call for it (the first: all of it).
    pub fn next(&mut self, k: &'static dyn Kind, now: Profile) -> Profile {
        match self.0.iter().position(|b| b.0 == k.name()) {
            Some(i) => {
                let before = std::mem::replace(&mut self.0[i].1, now.clone());
                rprof_profile::subtract_keeping(now, &before, k.delta_as_is())
            }
            None => {
                self.0.push((k.name(), now.clone()));
                now
            }
        }
    }
}
