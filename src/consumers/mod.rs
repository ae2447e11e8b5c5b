//! Consumers: what takes the kinds' profiles out of the process. `files` writes them at
//! exit, at the dump signal and at a fatal one (`collector` is the thread that runs those
//! dumps); `http` and `http_pages` serve them as Go's net/http/pprof does; `ledger` tells
//! `rprof run` what each process recorded.
//!
//! Contract: a consumer loops over `kinds::TABLE` and never names a kind; it takes each
//! kind's snapshot through [`collect`], once per dump or request, and names every address
//! of one collection in one batch ([`name_all`]). Consumers are listed once in
//! [`CONSUMERS`]. Imports `kinds`, `runtime`, `symbols` and `signal_safe`.

use crate::config::Config;
use crate::kinds::{Kind, State};
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
