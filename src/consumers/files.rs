//! The dump coordinator: owns what has been collected since the last dump, the output
//! files and their names, and the three triggers (exit, the dump signal, a fatal
//! SIGINT/SIGTERM). Never runs in signal context.
//!
//! Names: `<prefix>.<pid>.<kind>.pb.gz` at exit (kinds cpu, heap, heap-peak, block, mutex) and `<prefix>.<pid>.<kind>.<n>.pb.gz` for
//! the n-th snapshot; each file covers the time since the previous one. Files are written
//! under a temporary name and linked into place, so an existing file (or a symlink planted
//! there) is never replaced or followed.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use super::collect;
use crate::kinds;
use crate::runtime::log::{debug, info, warning};
use crate::signal_safe::lock::Lock;
use crate::signal_safe::sys;
use crate::symbols::encode::unix_now_ns;
use crate::symbols::symbolize;

/// Everything collected since the last dump, and where it goes.
pub struct DumpState {
    prefix: PathBuf,
    /// Where files go when the prefix's directory does not let this process write
    /// (`$TMPDIR` at load, else /tmp): a worker that dropped privileges, as nginx's do.
    fallback_dir: PathBuf,
    /// Each `Window` kind's snapshot as read for the previous file: the next file is the
    /// difference.
    before: super::Windows,
    snapshots: u32,
    window_start_unix: i64,
    window_start_mono: u64,
    /// When this process (or fork child) started, CLOCK_MONOTONIC.
    process_start_mono: u64,
    final_done: bool,
    /// Final files were written while the program went on (`final_files_now`): the next
    /// final files replace them.
    final_written: bool,
    /// The names of the files a dump writes (kinds, and `heap-peak`), for `RPROF_KEEP`.
    file_names: Vec<&'static str>,
    /// The process this state describes: a fork child finds its parent's here, and starts
    /// its own at its first use (`this_process`).
    pid: u32,
}

/// When the process last forked, (CLOCK_MONOTONIC, Unix time) in nanoseconds: written by
/// fork's prepare handler, read by the child's first dump (its window starts at the fork).
/// A child's handler that wrote the state itself would pay a page copy and a vDSO fault
/// in every fork; most children exec or exit before they ever dump.
static FORK_MONO: AtomicU64 = AtomicU64::new(0);
static FORK_UNIX: AtomicI64 = AtomicI64::new(0);

/// In fork's prepare handler: remembers the moment a child's profile starts.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
pub fn note_fork() {
    FORK_MONO.store(sys::monotonic_ns(), Ordering::Relaxed);
    FORK_UNIX.store(unix_now_ns(), Ordering::Relaxed);
}

/// `RPROF_PERIOD` in ns (0: no periodic files), and when the next ones are due.
static PERIOD_NS: AtomicU64 = AtomicU64::new(0);
static NEXT_PERIOD: AtomicU64 = AtomicU64::new(0);
/// `RPROF_KEEP`: numbered files kept per kind (0: all).
static KEEP: AtomicU32 = AtomicU32::new(0);

/// How long until periodic files are due (None: there are none).
pub fn until_period(now: u64) -> Option<u64> {
    (PERIOD_NS.load(Ordering::Relaxed) != 0)
        .then(|| NEXT_PERIOD.load(Ordering::Relaxed).saturating_sub(now))
}

/// On the collector thread: writes the periodic files when they are due.
pub fn periodic(now: u64) {
    let period = PERIOD_NS.load(Ordering::Relaxed);
    let next = NEXT_PERIOD.load(Ordering::Relaxed);
    if period == 0 || now < next {
        return;
    }
    // A period missed (the machine stopped) is not made up for.
    NEXT_PERIOD.store((next + period).max(now + period / 2), Ordering::Relaxed);
    snapshot(false);
}

/// The state of this process: in a fork child, the parent's is replaced at first use by
/// an empty one whose window starts at the fork.
fn this_process(slot: &mut Option<DumpState>) -> Option<&mut DumpState> {
    let s = slot.as_mut()?;
    let pid = std::process::id();
    if s.pid != pid {
        s.pid = pid;
        s.before.clear();
        s.snapshots = 0;
        s.window_start_unix = FORK_UNIX.load(Ordering::Relaxed);
        s.window_start_mono = FORK_MONO.load(Ordering::Relaxed);
        s.process_start_mono = s.window_start_mono;
        s.final_done = false;
        s.final_written = false;
    }
    Some(s)
}

/// Guards the collected data and the file sequence. Taken by the collector thread, by the
/// exit hook and by fork's prepare handler (so a child never inherits it held).
pub static STATE: Lock<Option<DumpState>> = Lock::new(None);

/// The files consumer.
pub struct Files;
pub static FILES: Files = Files;

impl super::Consumer for Files {
    fn name(&self) -> &'static str {
        "files"
    }
    fn start(&self, cfg: &crate::config::Config) -> bool {
        install(cfg.out_prefix.clone());
        KEEP.store(cfg.keep.unwrap_or(0), Ordering::Relaxed);
        let Some(period) = cfg.period_s else {
            return false;
        };
        // Numbered files every period, written by the collector thread.
        let period = u64::from(period) * 1_000_000_000;
        PERIOD_NS.store(period, Ordering::Relaxed);
        NEXT_PERIOD.store(sys::monotonic_ns() + period, Ordering::Relaxed);
        true
    }
    fn reset_after_fork(&self) -> bool {
        PERIOD_NS.load(Ordering::Relaxed) != 0
    }
    fn finish(&self, ending: Ending) {
        final_dump(ending);
    }
}

pub fn install(prefix: PathBuf) {
    let fallback_dir = std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    *STATE.lock() = Some(DumpState {
        prefix,
        fallback_dir,
        before: super::Windows::default(),
        snapshots: 0,
        window_start_unix: unix_now_ns(),
        window_start_mono: sys::monotonic_ns(),
        process_start_mono: sys::monotonic_ns(),
        final_done: false,
        final_written: false,
        file_names: Vec::new(),
        pid: std::process::id(),
    });
}

/// How long a dlclose waits for a dump in progress to let go of the symbolizer. Past it,
/// the library's samples are not pinned (they go unnamed). Nothing that holds the
/// symbolizer waits for what a program thread holds (`symbolize::lock_shared`): the bound
/// is a safety net.
const DLCLOSE_WAIT_NS: u64 = 1_000_000_000;

/// Before the real dlclose: resolve what has been sampled in objects that may be unloaded,
/// while they are still mapped. `in_rprof`: the dlclose comes from a signal handler that
/// interrupted rprof on this thread, which may hold the symbolizer itself: no wait.
pub fn before_dlclose(in_rprof: bool) {
    let wait = if in_rprof { 0 } else { DLCLOSE_WAIT_NS };
    let Some(mut guard) = symbolize::SHARED.try_lock_for(wait) else {
        return;
    };
    let s = symbolize::shared(&mut guard);
    for k in kinds::TABLE {
        k.pin_unloadable(s);
    }
}

/// Writes a numbered snapshot of everything since the previous dump. `in_handler`: in a
/// signal handler, on the program's only thread (`collector::serve_now`), which may be
/// inside its allocator: the allocator's own figures, which take its locks, are left out.
pub fn snapshot(in_handler: bool) {
    let mut guard = STATE.lock();
    let Some(s) = this_process(&mut guard) else {
        return;
    };
    if s.final_done {
        return;
    }
    s.snapshots += 1;
    let n = s.snapshots;
    write_profiles(s, Some(n), !in_handler, false);
    let keep = KEEP.load(Ordering::Relaxed);
    if keep > 0 && n > keep {
        // The files `keep` snapshots back go (those of kinds that wrote one then).
        for name in &s.file_names {
            let _ = std::fs::remove_file(file_name(&s.prefix, name, Some(n - keep)));
        }
    }
}

/// Writes the files a final dump would, now, while the program goes on: for a signal that
/// ends the program unless it catches it itself (a Go program's SIGTERM), written before
/// the program can react. A later final dump writes them again.
pub fn final_files_now() {
    let mut guard = STATE.lock();
    let Some(s) = this_process(&mut guard) else {
        return;
    };
    if s.final_done || (s.snapshots == 0 && nothing_recorded()) {
        return;
    }
    write_profiles(s, None, false, true);
    s.final_written = true;
}

/// How the process is ending when the final files are written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A normal exit: every thread can still run.
    Exit,
    /// A fatal signal: the thread it interrupted will never run again and may hold any lock
    /// of its own, the allocator's among them.
    Dying,
}

/// Writes the final files (at exit, or before dying of SIGINT/SIGTERM). Runs once.
pub fn final_dump(ending: Ending) {
    // The timers stop first, so that no CPU sample lands in the checks of /proc below.
    let signal = crate::signal_safe::cpu_signal::in_use();
    (crate::runtime::hooks::get().cpu_stop)();
    if ending == Ending::Exit {
        crate::runtime::masks::check_current_thread_for(signal);
        crate::runtime::masks::check_other_threads_for(signal);
    }
    let mut guard = STATE.lock();
    let Some(s) = this_process(&mut guard) else {
        return;
    };
    if s.final_done {
        return;
    }
    s.final_done = true;
    if s.snapshots == 0 && nothing_recorded() {
        // A short process that recorded nothing leaves no files (and no time spent on them).
        info!("nothing was recorded: no profile files written");
        crate::consumers::ledger::ended(&[], None);
    } else {
        let recorded = write_profiles(s, None, ending == Ending::Exit, false);
        let mut pattern = s.prefix.as_os_str().to_owned();
        pattern.push(format!(".{}.*.pb.gz", std::process::id()));
        crate::consumers::ledger::ended(&recorded, Some(&pattern.to_string_lossy()));
    }
    // Only when they would be printed: they read the kinds' tables (and in a fork child
    // a page written is a page copied).
    if crate::runtime::log::enabled(crate::config::LogLevel::Info) {
        for (level, line) in kinds::TABLE.iter().filter_map(|k| k.summary()) {
            crate::runtime::log::write(level, format_args!("{line}"));
        }
    }
    debug!(
        "rprof's own memory: {} bytes mapped",
        crate::signal_safe::own_alloc::mapped_bytes()
    );
}

/// The kinds written to files: those on, and not served over HTTP only.
fn file_kinds() -> impl Iterator<Item = &'static dyn kinds::Kind> {
    kinds::TABLE
        .iter()
        .copied()
        .filter(|k| k.enabled() && k.in_files())
}

/// Whether every kind written to files is empty: no CPU sample (nor lost one) since the
/// start, no sampled allocation, no recorded wait. Nothing is symbolized for it.
fn nothing_recorded() -> bool {
    file_kinds().all(|k| k.is_empty())
}

/// Writes the files of every kind on; returns what they hold, by kind (the window's for
/// `Window` kinds, everything since the start for the others). `provisional` files (final
/// ones written while the program goes on) leave the window open: the next files cover it
/// again. `allocator_free`: no thread can be stopped inside the program's allocator
/// (holding its locks), so its own figures can be read.
fn write_profiles(
    s: &mut DumpState,
    seq: Option<u32>,
    allocator_free: bool,
    provisional: bool,
) -> Vec<(&'static str, u64)> {
    let replace = seq.is_none() && s.final_written;
    move_if_unwritable(s);
    // The loader lookups the allocator's figures need, made before the symbolizer is taken
    // (see `symbolize::lock_shared`); not in a signal handler, where dlopen's allocation
    // could wait for the allocator's lock the interrupted thread holds.
    if allocator_free {
        crate::symbols::maps::prime_lookups();
    }
    let mut symbolizer = symbolize::SHARED.lock();
    let symbolizer = symbolize::shared(&mut symbolizer);
    let now_mono = sys::monotonic_ns();
    let cx = kinds::Context {
        start_unix_ns: s.window_start_unix,
        duration_ns: now_mono.saturating_sub(s.window_start_mono) as i64,
        process_start_mono_ns: s.process_start_mono,
    };
    // One snapshot of each kind; `Window` kinds become the window since the last file.
    let taken: Vec<_> = collect(file_kinds(), allocator_free)
        .into_iter()
        .map(|(k, now)| (k, s.before.next(k, now, !provisional)))
        .collect();
    // Every kind's addresses in one batch: each object's symbol table is read once.
    super::name_all(&taken, symbolizer);
    let mut recorded = Vec::new();
    for (k, state) in &taken {
        recorded.push((k.name(), k.recorded(state)));
        for (file, profile) in k.profiles(state, &cx, symbolizer) {
            if !s.file_names.contains(&file) {
                s.file_names.push(file);
            }
            write_profile(&s.prefix, file, seq, &profile, replace);
        }
    }
    if !provisional {
        s.window_start_unix = unix_now_ns();
        s.window_start_mono = now_mono;
    }
    recorded
}

/// Moves this process's files to the fallback directory when the prefix's directory does
/// not let it write (its effective ids lack the permission, or the file system is
/// read-only), and says so once: the files are not lost without a word. The run ledger's
/// line names where they went, for `rprof run` (a worker that pointed fd 2 elsewhere
/// drops the line on stderr).
fn move_if_unwritable(s: &mut DumpState) {
    let dir = match s.prefix.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(why) = unwritable(&dir) else {
        return;
    };
    if unwritable(&s.fallback_dir).is_some() {
        return;
    }
    let name = s
        .prefix
        .file_name()
        .unwrap_or(std::ffi::OsStr::new("rprof"));
    let moved = s.fallback_dir.join(name);
    warning!(
        "cannot write in {} ({why}): this process's profiles go to {}.{}.*.pb.gz",
        dir.display(),
        moved.display(),
        std::process::id()
    );
    s.prefix = moved;
}

/// Why this process cannot create files in `dir` (None: it can, or that is not known).
/// Only a lack of permission or a read-only file system counts.
#[allow(unsafe_code)]
fn unwritable(dir: &Path) -> Option<std::io::Error> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: faccessat with a NUL-terminated path; AT_EACCESS checks the effective ids.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if rc == 0 {
        return None;
    }
    let e = std::io::Error::last_os_error();
    matches!(
        e.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::EROFS)
    )
    .then_some(e)
}

fn write_profile(
    prefix: &Path,
    kind: &str,
    seq: Option<u32>,
    profile: &rprof_profile::Profile,
    replace: bool,
) {
    let bytes = rprof_profile::encode_gzip(profile);
    let path = file_name(prefix, kind, seq);
    match write_new_file(&path, &bytes, replace) {
        Ok(()) => info!(
            "wrote {} ({} samples)",
            path.display(),
            profile.sample.len()
        ),
        Err(e) => warning!("cannot write {}: {e}", path.display()),
    }
}

fn file_name(prefix: &Path, kind: &str, seq: Option<u32>) -> PathBuf {
    let pid = std::process::id();
    let mut name = prefix.as_os_str().to_owned();
    match seq {
        Some(n) => name.push(format!(".{pid}.{kind}.{n}.pb.gz")),
        None => name.push(format!(".{pid}.{kind}.pb.gz")),
    }
    PathBuf::from(name)
}

/// Writes `bytes` to a new temporary file beside `path`, then links it to `path`. Never
/// replaces an existing file (unless `replace`: rprof's own, written earlier by this
/// process) and never follows a symlink at either name.
fn write_new_file(path: &Path, bytes: &[u8], replace: bool) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", sys::monotonic_ns() % 1_000_000_007));
    let tmp = PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| e.to_string())?;
    if let Err(e) = f.write_all(bytes) {
        drop(f);
        let _ = std::fs::remove_file(&tmp);
        return Err(e.to_string());
    }
    drop(f);
    if replace {
        return std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            e.to_string()
        });
    }
    match std::fs::hard_link(&tmp, path) {
        Ok(()) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(format!(
            "a file already exists there and is not replaced; the profile is in {}",
            tmp.display()
        )),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dlclose waits for a dump that holds the symbolizer (here 200 ms, four times the
    /// bound it used to have), so that the library's samples are pinned, not lost; one
    /// made from inside rprof (a handler that interrupted it) does not wait at all.
    #[test]
    fn dlclose_waits_for_a_dump_in_progress() {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        static RELEASED: AtomicBool = AtomicBool::new(false);
        let hold = |ms: u64, done: &'static AtomicBool| {
            let (taken, is_taken) = std::sync::mpsc::channel();
            let t = std::thread::spawn(move || {
                let _g = symbolize::SHARED.lock();
                taken.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(ms));
                done.store(true, SeqCst);
            });
            is_taken.recv().unwrap();
            t
        };
        let holder = hold(200, &RELEASED);
        before_dlclose(false);
        assert!(
            RELEASED.load(SeqCst),
            "dlclose gave up before the dump let go"
        );
        holder.join().unwrap();

        static RELEASED_AGAIN: AtomicBool = AtomicBool::new(false);
        let holder = hold(200, &RELEASED_AGAIN);
        before_dlclose(true);
        assert!(
            !RELEASED_AGAIN.load(SeqCst),
            "a dlclose from inside rprof waited"
        );
        holder.join().unwrap();
    }

    #[test]
    fn names() {
        let pid = std::process::id();
        assert_eq!(
            file_name(Path::new("/o/rprof"), "cpu", None),
            PathBuf::from(format!("/o/rprof.{pid}.cpu.pb.gz"))
        );
        assert_eq!(
            file_name(Path::new("/o/rprof"), "cpu", Some(3)),
            PathBuf::from(format!("/o/rprof.{pid}.cpu.3.pb.gz"))
        );
    }

    #[test]
    fn never_replaces_or_follows() {
        let dir = std::env::temp_dir().join(format!("rprof-dump-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.pb.gz");
        write_new_file(&p, b"one", false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        let err = write_new_file(&p, b"two", false).unwrap_err();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        let target = dir.join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.join("link.pb.gz");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write_new_file(&link, b"evil", false).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(write_new_file(&dir.join("missing/x.pb.gz"), b"x", false).is_err());
        // rprof's own final files, written while the program went on, are replaced.
        write_new_file(&p, b"three", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three");
        let tmps = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("a.pb.gz.tmp"))
            .count();
        assert_eq!(tmps, 1, "only the refused write leaves its temporary file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
