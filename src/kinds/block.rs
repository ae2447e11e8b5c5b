//! The block kind: waits in pthread calls, from the waiter (Go's block profile), recorded by `waits`.

use std::sync::atomic::{AtomicBool, Ordering};

use rprof_profile::Profile;

use super::waits::{self, EventBucket, Which};
use super::{state, Context, Kind, Path, Shape, State};
use crate::config::Config;
use crate::signal_safe::lock::RawLock;
use crate::symbols::symbolize::Symbolizer;

pub struct Block;
pub static BLOCK: Block = Block;

static ON: AtomicBool = AtomicBool::new(false);

impl Kind for Block {
    fn name(&self) -> &'static str {
        "block"
    }
    fn about(&self) -> &'static str {
        "Stack traces that led to blocking on synchronization primitives"
    }
    fn shape(&self) -> Shape {
        Shape::Cumulative
    }
    fn init(&self, cfg: &Config, on: bool) -> bool {
        let setting = if on { cfg.block_rate } else { 0 };
        waits::init_block(setting);
        ON.store(setting > 0, Ordering::Relaxed);
        setting > 0
    }
    fn enabled(&self) -> bool {
        ON.load(Ordering::Relaxed)
    }
    fn paths(&self) -> &'static [Path] {
        &[
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
        ]
    }
    fn snapshot(&self, _allocator_figures: bool) -> State {
        Box::new(waits::buckets_of(Which::Block))
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
        let p = waits::contention_profile(state::<Vec<EventBucket>>(s), 1.0, sym);
        vec![("block", p)]
    }
    fn text(&self, s: &State, _debug: i64, sym: &mut Symbolizer) -> Option<String> {
        Some(waits::contention_text(
            state::<Vec<EventBucket>>(s),
            sym,
            false,
        ))
    }
    fn recorded(&self, s: &State) -> u64 {
        let events = state::<Vec<EventBucket>>(s)
            .iter()
            .map(|e| e.count)
            .sum::<f64>()
            .round();
        (1.0 * events).round() as u64
    }
    fn is_empty(&self) -> bool {
        waits::are_empty().0
    }
    fn count(&self) -> Option<usize> {
        Some(waits::bucket_count(Which::Block))
    }
    fn pin_unloadable(&self, sym: &mut Symbolizer) {
        // Both tables at once (`waits` keeps them together).
        waits::pin_unloadable(sym);
    }
    fn fork_locks(&self) -> &'static [&'static dyn RawLock] {
        static LOCKS: [&dyn RawLock; 1] = [&waits::TABLE];
        &LOCKS
    }
    fn reset_after_fork(&self) {
        // Both tables and the wait slots at once.
        waits::reset_after_fork();
    }
}
