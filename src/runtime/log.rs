//! Diagnostics on stderr, one line each, always starting `rprof:`. Never stdout.
//!
//! Only on the stderr found at load: a program that closes its descriptors and opens a
//! data file as fd 2 must not find rprof's lines in its data. Each line first checks that
//! fd 2 is still that file (device and inode); when it is not, the line is dropped and
//! counted (`dropped`).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::config::LogLevel;

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Warn as u8);

pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The stderr found at load (device, inode); (0, 0): there was none.
static STDERR_DEV: AtomicU64 = AtomicU64::new(0);
static STDERR_INO: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The identity of what fd 2 refers to now, if it is open.
fn stderr_identity() -> Option<(u64, u64)> {
    // SAFETY: stat is plain data; fstat fills it or fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only writes the local `st`.
    (unsafe { libc::fstat(2, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// Remembers the stderr of the process at load: the only file rprof's lines go to.
pub fn init() {
    let (dev, ino) = stderr_identity().unwrap_or((0, 0));
    STDERR_DEV.store(dev, Ordering::Relaxed);
    STDERR_INO.store(ino, Ordering::Relaxed);
}

fn stderr_is_the_one_found() -> bool {
    let found = (
        STDERR_DEV.load(Ordering::Relaxed),
        STDERR_INO.load(Ordering::Relaxed),
    );
    found != (0, 0) && stderr_identity() == Some(found)
}

/// Lines not written because fd 2 was no longer the stderr found at load.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
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
    if !stderr_is_the_one_found() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let line = crate::runtime::guard::unprofiled(|| format!("rprof: {msg}\n"));
    // SAFETY: writes the bytes of a live String to fd 2; a failed write is ignored.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

// The arguments are evaluated only when the level is on: some read rprof's tables (and a
// fork child that writes to a page copies it).
macro_rules! log_at {
    ($level:ident, $($t:tt)*) => {
        if $crate::runtime::log::enabled($crate::config::LogLevel::$level) {
            $crate::runtime::log::write($crate::config::LogLevel::$level, format_args!($($t)*))
        }
    };
}
macro_rules! warning {
    ($($t:tt)*) => { $crate::runtime::log::log_at!(Warn, $($t)*) };
}
macro_rules! info {
    ($($t:tt)*) => { $crate::runtime::log::log_at!(Info, $($t)*) };
}
macro_rules! debug {
    ($($t:tt)*) => { $crate::runtime::log::log_at!(Debug, $($t)*) };
}
pub(crate) use {debug, info, log_at, warning};
