//! The mutex kind: contended mutexes and rwlocks, from the holder that kept others waiting (Go's mutex profile), recorded by `waits`.

use std::sync::atomic::{AtomicBool, Ordering};

use rprof_profile::Profile;

use super::waits::{self, EventBucket, Which};
use super::{state, Context, Kind, Path, Shape, State};
use crate::config::Config;
use crate::signal_safe::lock::RawLock;
use crate::symbols::symbolize::Symbolizer;

pub struct Mutex;
pub static MUTEX: Mutex = Mutex;

static ON: AtomicBool = AtomicBool::new(false);

impl Kind for Mutex {
    fn name(&self) -> &'static str {
        "mutex"
    }
    fn about(&self) -> &'static str {
        "Stack traces of holders of contended mutexes"
    }
    fn shape(&self) -> Shape {
        Shape::Cumulative
    }
    fn init(&self, cfg: &Config, on: bool) -> bool {
        let setting = if on { cfg.mutex_fraction } else { 0 };
        waits::init_mutex(setting);
        ON.store(setting > 0, Ordering::Relaxed);
        setting > 0
    }
    fn enabled(&self) -> bool {
        ON.load(Ordering::Relaxed)
    }
    fn paths(&self) -> &'static [Path] {
        &[
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
        ]
    }
    fn snapshot(&self, _allocator_figures: bool) -> State {
        Box::new(waits::buckets_of(Which::Mutex))
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
        let p = waits::contention_profile(
            state::<Vec<EventBucket>>(s),
            waits::mutex_fraction() as f64,
            sym,
        );
        vec![("mutex", p)]
    }
    fn text(&self, s: &State, _debug: i64, sym: &mut Symbolizer) -> Option<String> {
        Some(waits::contention_text(
            state::<Vec<EventBucket>>(s),
            sym,
            true,
        ))
    }
    fn recorded(&self, s: &State) -> u64 {
        let events = state::<Vec<EventBucket>>(s)
            .iter()
            .map(|e| e.count)
            .sum::<f64>()
            .round();
        (waits::mutex_fraction() as f64 * events).round() as u64
    }
    fn is_empty(&self) -> bool {
        waits::are_empty().1
    }
    fn count(&self) -> Option<usize> {
        Some(waits::bucket_count(Which::Mutex))
    }
    fn pin_unloadable(&self, sym: &mut Symbolizer) {
        // Both tables at once (`waits` keeps them together); the second call finds nothing new.
        waits::pin_unloadable(sym);
    }
    fn fork_locks(&self) -> &'static [&'static dyn RawLock] {
        static LOCKS: [&dyn RawLock; 1] = [&waits::TABLE];
        &LOCKS
    }
    fn reset_after_fork(&self) {
        // Both tables at once; the second call finds them empty.
        waits::reset_after_fork();
    }
}
