//! Diagnostics on stderr, one line each, always starting `rprof:`. Never stdout.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::LogLevel;

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Warn as u8);

pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: LogLevel) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed) && level != LogLevel::Off
}

/// Writes `rprof: <msg>\n` to fd 2 in one write(2) so lines from threads do not interleave.
/// Not for signal context (it formats into a heap buffer).
pub fn write(level: LogLevel, msg: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let line = crate::guard::unprofiled(|| format!("rprof: {msg}\n"));
    // SAFETY: writes the bytes of a live String to fd 2; a failed write is ignored.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

macro_rules! warning {
    ($($t:tt)*) => { $crate::log::write($crate::config::LogLevel::Warn, format_args!($($t)*)) };
}
macro_rules! info {
    ($($t:tt)*) => { $crate::log::write($crate::config::LogLevel::Info, format_args!($($t)*)) };
}
macro_rules! debug {
    ($($t:tt)*) => { $crate::log::write($crate::config::LogLevel::Debug, format_args!($($t)*)) };
}
pub(crate) use {debug, info, warning};
