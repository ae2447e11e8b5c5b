//! The threadcreate kind: the stacks that created the program's threads, with how many
//! each (Go's threadcreate profile), since the start or the fork.

use rprof_profile::Profile;

use super::{state, Context, Kind, Path, Shape, State};
use crate::config::Config;
use crate::signal_safe::lock::RawLock;
use crate::symbols::encode::{count_profile, count_text, grouped};
use crate::symbols::symbolize::Symbolizer;

pub struct ThreadCreate;
pub static THREADCREATE: ThreadCreate = ThreadCreate;

type Records = Vec<(Vec<u64>, String, u64)>;

impl Kind for ThreadCreate {
    fn name(&self) -> &'static str {
        "threadcreate"
    }
    fn about(&self) -> &'static str {
        "Stack traces that led to the creation of new OS threads"
    }
    fn shape(&self) -> Shape {
        Shape::Cumulative
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
            name: "threadcreate",
            default_sample_type: None,
            about: None,
        }]
    }
    fn snapshot(&self, _allocator_figures: bool) -> State {
        let created = creations();
        let records: Records = grouped(created.iter().map(|(s, n)| (s.as_slice(), "", *n)));
        Box::new(records)
    }
    fn addresses(&self, s: &State, out: &mut Vec<u64>) {
        out.extend(state::<Records>(s).iter().flat_map(|r| r.0.iter().copied()));
    }
    fn profiles(
        &self,
        s: &State,
        _cx: &Context,
        sym: &mut Symbolizer,
    ) -> Vec<(&'static str, Profile)> {
        vec![(
            "threadcreate",
            count_profile("threadcreate", state::<Records>(s), sym),
        )]
    }
    fn text(&self, s: &State, _debug: i64, sym: &mut Symbolizer) -> Option<String> {
        Some(count_text("threadcreate", state::<Records>(s), sym))
    }
    fn recorded(&self, s: &State) -> u64 {
        state::<Records>(s).iter().map(|r| r.2).sum()
    }
    fn is_empty(&self) -> bool {
        creations().is_empty()
    }
    fn count(&self) -> Option<usize> {
        Some(creations().iter().map(|c| c.1).sum::<u64>() as usize)
    }
    fn fork_locks(&self) -> &'static [&'static dyn RawLock] {
        static LOCKS: [&dyn RawLock; 1] = [&CREATIONS];
        &LOCKS
    }
    fn reset_after_fork(&self) {
        reset_after_fork();
    }
}

/// Stacks that created threads, with how many each (Go's threadcreate profile). Taken
/// by fork's prepare handler too.
pub static CREATIONS: crate::signal_safe::lock::Lock<
    Option<std::collections::HashMap<Vec<u64>, u64>>,
> = crate::signal_safe::lock::Lock::new(None);

/// Records the calling thread's stack as creating a thread; `entry`: the interposed
/// pthread_create, whose frame and those above it are rprof's.
pub fn record(entry: usize) {
    let stack = crate::kinds::stack::capture(crate::kinds::stack::OwnFrames::Entry(entry));
    *CREATIONS
        .lock()
        .get_or_insert_with(Default::default)
        .entry(stack)
        .or_insert(0) += 1;
}

/// The stacks that created the program's threads (since the start or the fork), with
/// their counts.
pub fn creations() -> Vec<(Vec<u64>, u64)> {
    CREATIONS
        .lock()
        .as_ref()
        .map(|m| m.iter().map(|(s, &n)| (s.clone(), n)).collect())
        .unwrap_or_default()
}

/// In a fork child: the parent's creations are not the child's.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
pub fn reset_after_fork() {
    // SAFETY: called from fork's child handler only.
    let created = unsafe { CREATIONS.in_fork_child() };
    if created.as_ref().is_some_and(|m| !m.is_empty()) {
        // Left behind, not freed: the time taken does not depend on the parent's history.
        std::mem::forget(created.take());
    }
}
