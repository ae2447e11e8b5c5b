//! librprof.so: profiles an unmodified program it is preloaded into and writes pprof files.
//!
//! Layers, each a folder whose `mod.rs` states its contract; a file imports only from its
//! own layer and those below it, and nothing forms a cycle (tests/layers.rs checks both):
//! - `lifecycle` (with this file, the root): load, exit and fork; it wires the rest.
//! - `interpose`: the exported libc symbols, thin shims.
//! - `consumers`: files, HTTP, the run ledger; they loop over the kinds' table.
//! - `kinds`: the sources, one file per profile kind behind one trait, listed in one table.
//! - `runtime`: signals, masks, threads, the reentrancy guard, the log.
//! - `symbols`: mappings, debug info, symbolization, profile.proto encoding.
//! - `signal_safe`: everything a signal handler or an allocation hook reaches.
//!
//! `config` (crates/config, shared with the `rprof` command) parses the `RPROF_*` variables.
#![deny(unsafe_code)]
// Unit-test builds neither run the load hook nor export the interposed symbols, so the
// code reachable only from them is unused there.
#![cfg_attr(test, allow(dead_code))]

use rprof_config as config;
mod consumers;
mod interpose;
mod kinds;
mod lifecycle;
mod runtime;
mod signal_safe;
mod symbols;

#[cfg(not(test))]
#[ctor::ctor]
fn load() {
    runtime::guard::unprofiled(lifecycle::start);
}
