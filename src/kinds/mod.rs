//! Sources: one file per profile kind.

pub mod contention;
pub mod cpu;
pub mod goroutine;
pub mod heap;
pub mod pprof;
pub mod stack;
pub mod threadcreate;
