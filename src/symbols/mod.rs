//! Symbols: from addresses to names. `maps` reads the process's mappings, `debuginfo` an
//! object's symbol and line tables, `symbolize` caches what they give, `go` recognises a
//! Go program's runtime, `syscall_names` names system calls, `perf_map` names a JIT's code
//! from the perf map or jitdump it writes.
//!
//! Contract: never reached from a signal handler or an allocation hook; runs on rprof's
//! threads (or at load, exit and a dump) and may allocate from rprof's own allocator. Imports
//! only `signal_safe`.

pub mod debuginfo;
mod dwarf;
mod elf_symbols;
pub mod encode;
pub mod go;
mod image;
pub mod maps;
mod perf_map;
pub mod symbolize;
pub mod syscall_names;
