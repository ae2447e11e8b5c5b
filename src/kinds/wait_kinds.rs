//! The block and mutex kinds, over the waits `waits` records: block (Go's block profile)
//! from the waiter's side, mutex (Go's mutex profile) from the holder that kept others
//! waiting. One type, the two differing only in their table, setting and scale.

use std::sync::atomic::{AtomicBool, Ordering};

use rprof_profile::Profile;

use super::waits::{self, EventBucket, Which};
use super::{state, Context, Kind, Path, Shape, State};
use crate::config::Config;
use crate::signal_safe::lock::RawLock;
use crate::symbols::symbolize::Symbolizer;

pub struct WaitKind {
    which: Which,
    name: &'static str,
    about: &'static str,
    paths: &'static [Path],
    on: AtomicBool,
}

pub static BLOCK: WaitKind = WaitKind {
    which: Which::Block,
    name: "block",
    about: "Stack traces that led to blocking on synchronization primitives",
    paths: &[
        Path {
            name: "block",
            default_sample_type: None,
            about: None,
        },
        Path {
            name: "delta_block",
            default_sample_type: None,
            about: None,
        },
    ],
    on: AtomicBool::new(false),
};

pub static MUTEX: WaitKind = WaitKind {
    which: Which::Mutex,
    name: "mutex",
    about: "Stack traces of holders of contended mutexes",
    paths: &[
        Path {
            name: "mutex",
            default_sample_type: None,
            about: None,
        },
        Path {
            name: "delta_mutex",
            default_sample_type: None,
            about: None,
        },
    ],
    on: AtomicBool::new(false),
};

impl WaitKind {
    /// What every recorded event is multiplied by: the mutex fraction (1 in this many is
    /// kept); 1 for block, whose buckets are already unbiased.
    fn scale(&self) -> f64 {
        match self.which {
            Which::Block => 1.0,
            Which::Mutex => waits::mutex_fraction() as f64,
        }
    }
}

impl Kind for WaitKind {
    fn name(&self) -> &'static str {
        self.name
    }
    fn about(&self) -> &'static str {
        self.about
    }
    fn shape(&self) -> Shape {
        Shape::Cumulative
    }
    fn push_name(&self) -> Option<&'static str> {
        Some(self.name)
    }
    fn init(&self, cfg: &Config, on: bool) -> bool {
        let setting = match (on, self.which) {
            (false, _) => 0,
            (true, Which::Block) => cfg.block_rate,
            (true, Which::Mutex) => cfg.mutex_fraction,
        };
        match self.which {
            Which::Block => waits::init_block(setting),
            Which::Mutex => waits::init_mutex(setting),
        }
        self.on.store(setting > 0, Ordering::Relaxed);
        setting > 0
    }
    fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }
    fn paths(&self) -> &'static [Path] {
        self.paths
    }
    fn snapshot(&self, _allocator_figures: bool) -> State {
        Box::new(waits::buckets_of(self.which))
    }
    fn addresses(&self, s: &State, out: &mut Vec<u64>) {
        out.extend(
            state::<Vec<EventBucket>>(s)
                .iter()
                .flat_map(|b| b.stack.iter().copied()),
        );
    }
    fn profiles(
        &self,
        s: &State,
        _cx: &Context,
        sym: &mut Symbolizer,
    ) -> Vec<(&'static str, Profile)> {
        let p = waits::contention_profile(state::<Vec<EventBucket>>(s), self.scale(), sym);
        vec![(self.name, p)]
    }
    fn text(&self, s: &State, _debug: i64, sym: &mut Symbolizer) -> Option<String> {
        Some(waits::contention_text(
            state::<Vec<EventBucket>>(s),
            sym,
            self.which == Which::Mutex,
        ))
    }
    fn recorded(&self, s: &State) -> u64 {
        let events = state::<Vec<EventBucket>>(s)
            .iter()
            .map(|e| e.count)
            .sum::<f64>()
            .round();
        (self.scale() * events).round() as u64
    }
    fn is_empty(&self) -> bool {
        let (block, mutex) = waits::are_empty();
        match self.which {
            Which::Block => block,
            Which::Mutex => mutex,
        }
    }
    fn count(&self) -> Option<usize> {
        Some(waits::bucket_count(self.which))
    }
    fn pin_unloadable(&self, sym: &mut Symbolizer) {
        // Both tables at once (`waits` keeps them together); the second kind's call finds
        // nothing new.
        waits::pin_unloadable(sym);
    }
    fn fork_locks(&self) -> &'static [&'static dyn RawLock] {
        static LOCKS: [&dyn RawLock; 1] = [&waits::TABLE];
        &LOCKS
    }
    fn reset_after_fork(&self) {
        // Both tables and the wait slots at once; the second kind's call finds them empty.
        waits::reset_after_fork();
    }
}
