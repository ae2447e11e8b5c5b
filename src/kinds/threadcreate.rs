//! The threadcreate kind: the stacks that created the program's threads, with how many
//! each (Go's threadcreate profile), since the start or the fork.

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
