//! The program-facing runtime: rprof's signal handlers hidden from the program
//! (`signals`), the program's signal masks (`masks`), its threads as rprof knows them
//! (`threads`), rprof's own threads (`own_threads`), the reentrancy guard (`guard`) and
//! the `rprof:` lines on stderr (`log`).
//!
//! Contract: knows no profile kind and no consumer. What a kind or a consumer must do
//! when a signal arrives or a thread starts is handed in at load as a function
//! ([`signals::Hooks`]). Imports only `symbols` and `signal_safe`.

pub mod guard;
pub mod hooks;
pub mod log;
pub mod masks;
pub mod own_threads;
pub mod signals;
pub mod threads;
