//! The process's lifecycle: load (`start`, or `go_dormant` for a program that is not one
//! of `RPROF_PROGRAMS`), normal exit, `_exit` in a fork child, and fork. The only place
//! that wires the layers together: it hands the runtime its hooks, starts the kinds in
//! `kinds::TABLE` and the consumers in `consumers::CONSUMERS`, and resets both in a fork
//! child.

use crate::config::{self, Config};
use crate::consumers::{self, collector, files, ledger};
use crate::interpose;
use crate::kinds::{self, cpu, heap, Kind};
use crate::runtime::log::{debug, info, warning};
use crate::runtime::{guard, hooks, log, masks, signals, threads};
use crate::signal_safe::{self, alt_stack, lock as sync};
use crate::symbols::{go, maps, symbolize};

/// Reads the configuration, installs handlers and timers, and starts the consumers.
pub fn start() {
    log::init();
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let (cfg, warnings) = Config::parse(|k| std::env::var(k).ok(), &cwd);
    log::set_level(cfg.log);
    for w in &warnings {
        warning!("{w}");
    }
    let names = program_names();
    ledger::init(cfg.ledger.clone(), &names);
    if !cfg.wants(&names) {
        go_dormant(&names);
        return;
    }
    ledger::loaded();
    signal_safe::real::init();
    alt_stack::init();
    // The loader lookups a dump needs, made now on the loading thread: made later on one
    // of rprof's threads, a failed dlsym's message would take memory from the program's
    // malloc there (a new arena, seen in the program's own allocator figures).
    maps::prime_lookups();
    symbolize::init();
    if let Some(found) = go::init() {
        debug!("{found}");
    }
    if !signal_safe::unwind::init() {
        warning!("this glibc has no _dl_find_object (glibc < 2.35): stacks hold only their innermost function");
    }
    interpose::locks::init();
    if let Some(w) = kinds::init(&cfg) {
        warning!("{w}");
    }
    let cpu_on = cpu::CPU.enabled();
    hooks::set(hooks::Hooks {
        cpu_handler: cpu::on_cpu_signal,
        cpu_move_to: cpu::move_to,
        cpu_stop: cpu::stop,
        snapshot: collector::request_snapshot,
        fatal: collector::on_fatal_signal,
        final_files_and_wait: collector::final_files_and_wait,
        die_of: collector::die_of,
        // At its start rather than at its first malloc, which then makes no system call.
        thread_started: heap::claim_counters_now,
        thread_exiting: || {
            masks::check_current_thread();
            cpu::disarm_current_thread();
            heap::release_thread();
        },
        last_thread_exited: || {
            for k in kinds::TABLE {
                k.stop_threads();
            }
            consumers::stop_threads();
            collector::stop_and_join();
        },
        became_threaded: || interpose::locks::set_threaded(true),
        exit_called: before_exit_call,
    });
    // Files, HTTP: before any handler can ask for a dump.
    let mut need_thread = false;
    for c in consumers::CONSUMERS {
        if c.start(&cfg) {
            debug!("{} works on rprof's thread", c.name());
            need_thread = true;
        }
    }
    signals::install(&cfg, cpu_on);
    masks::init_current_thread();
    threads::init();
    threads::register_current();
    let others = threads::other_thread_ids();
    if cpu_on {
        cpu::arm_current_thread();
        cpu::arm_other_threads(&others);
    }
    register_process_hooks();
    guard::set_deferred_handler(collector::serve_deferred);
    // A consumer may have started a thread of rprof's (the HTTP server's).
    let threaded = !others.is_empty() || !threads::single_threaded();
    if threaded {
        threads::set_threaded();
    }
    interpose::locks::set_threaded(threaded);
    if threaded || need_thread {
        // Dumps move to rprof's thread, as in any process with threads.
        collector::ensure_started();
    }
    if go::present() {
        warning!(
            "a Go program ends with a raw exit_group system call, which runs no exit hook: no files are written at its normal exit; SIGTERM, SIGINT or the dump signal ({}) write them{}",
            cfg.dump_signal.map_or_else(|| "off".to_string(), |s| s.to_string()),
            if cfg.http.is_some() { ", and RPROF_HTTP serves them" } else { ", or RPROF_HTTP serves them" }
        );
    }
    info!(
        "profiling pid {} into {}.{}.*.pb.gz (cpu {} Hz, heap rate {})",
        std::process::id(),
        cfg.out_prefix.display(),
        std::process::id(),
        cfg.cpu_hz,
        cfg.heap_rate
    );
    debug!("{cfg:?}");
}

/// The names `RPROF_PROGRAMS` is matched against (config::program_names), from
/// /proc/self/exe and /proc/self/cmdline.
fn program_names() -> Vec<String> {
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let argv: Vec<String> = std::fs::read("/proc/self/cmdline")
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    config::program_names(&exe, &argv)
}

/// Not one of `RPROF_PROGRAMS`: the shims forward (allocations are counted, never
/// sampled; locks go straight to libc), and nothing else is set up: no handler, no timer,
/// no thread, no exit hook, no file. A program it execs loads rprof afresh.
fn go_dormant(names: &[String]) {
    signal_safe::real::init();
    heap::init(0);
    interpose::locks::init();
    interpose::locks::set_threaded(false);
    ledger::dormant();
    debug!(
        "{} is not one of RPROF_PROGRAMS: not profiled",
        names.join(" ")
    );
}

#[allow(unsafe_code)]
fn register_process_hooks() {
    // SAFETY: registers extern "C" functions that live as long as the library.
    unsafe {
        libc::atexit(on_exit);
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        );
    }
}

/// Normal exit (return from main, exit(), the last thread's pthread_exit). The CPU samples
/// taken from here on are rprof's, and dropped. A tick that lands while the kernel reads in
/// a page of rprof's exit code delivers its timer signal at that code: so this function
/// shares its section with the CPU signal handler, whose page every sample touches, and
/// says so before anything else.
// SAFETY: a section of rprof's own code, merged with the other .text.hot ones.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_sample"]
extern "C" fn on_exit() {
    cpu::own_work(true);
    guard::unprofiled(|| consumers::finish(files::Ending::Exit));
}

/// The pid of this process if it is a fork child rprof set up (its atfork child handler
/// ran here); 0 otherwise. A vfork child shares its parent's memory and sees its parent's
/// value, which is never its own pid.
static FORK_CHILD_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// `_exit`/`_Exit` called: a fork child writes its files as at exit. Only when no rprof
/// lock is held on this thread (`_exit` is allowed in a signal handler, which may have
/// interrupted rprof); the allocator's figures are left out for the same reason.
fn before_exit_call() {
    let me = FORK_CHILD_PID.load(std::sync::atomic::Ordering::Relaxed);
    if me == 0 || me != signal_safe::sys::getpid() {
        return;
    }
    if guard::held() || signal_safe::own_alloc::OWN.is_locked() {
        return;
    }
    guard::unprofiled(|| consumers::finish(files::Ending::Dying));
}

/// Whether `before_fork` took rprof's locks for this fork.
static FORK_LOCKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Holds our locks across fork so the child never inherits one held by a vanished thread.
/// A process with one thread skips them: nobody else can hold them, and every lock word
/// written after a fork costs the parent and the child a page copy each.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
extern "C" fn before_fork() {
    files::note_fork();
    heap::note_fork();
    let lock = !threads::single_threaded();
    sync::store_changed!(FORK_LOCKED, lock);
    if !lock {
        return;
    }
    signals::MANAGED.raw_lock();
    files::STATE.raw_lock();
    symbolize::SHARED.raw_lock();
    kinds::for_each_fork_lock(|l| l.raw_lock());
    // Last: the holders of the locks above may allocate.
    signal_safe::own_alloc::OWN.raw_lock();
}

#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
extern "C" fn after_fork_parent() {
    if FORK_LOCKED.load(std::sync::atomic::Ordering::Relaxed) {
        release_fork_locks();
    }
}

#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
fn release_fork_locks() {
    signal_safe::own_alloc::OWN.raw_unlock();
    kinds::for_each_fork_lock_reversed(|l| l.raw_unlock());
    symbolize::SHARED.raw_unlock();
    files::STATE.raw_unlock();
    signals::MANAGED.raw_unlock();
}

/// The child starts its own profile: its own timers, collector thread and files.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
extern "C" fn after_fork_child() {
    if FORK_LOCKED.load(std::sync::atomic::Ordering::Relaxed) {
        release_fork_locks();
    }
    sync::store_changed!(FORK_CHILD_PID, signal_safe::sys::getpid());
    guard::unprofiled(|| {
        signal_safe::unwind::reset_after_fork();
        signal_safe::stack_requests::reset_after_fork();
        masks::reset_after_fork();
        threads::reset_after_fork();
        // Each kind starts the child's profile (the CPU timer of this, its only thread).
        for k in kinds::TABLE {
            k.reset_after_fork();
        }
        collector::reset_after_fork();
        // One thread, unless a kind started its own (the wall sampler).
        interpose::locks::set_threaded(!threads::single_threaded());
        let mut need_thread = !threads::single_threaded();
        for c in consumers::CONSUMERS {
            need_thread |= c.reset_after_fork();
        }
        if need_thread {
            // As at load: dumps move to rprof's thread.
            collector::ensure_started();
        }
    });
}
