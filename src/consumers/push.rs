//! Pushing profiles to a backend (`RPROF_PUSH`): every `RPROF_PUSH_PERIOD` seconds, each
//! pushed kind's window on its own thread, `rprof-push`, started only when push is asked
//! for; to Grafana Pyroscope's Push API or as OpenTelemetry profiles over OTLP/HTTP (the
//! messages are `rprof_profile::push`'s, the HTTP is ureq's: blocking, no async runtime).
//!
//! Windows: `Window` kinds (cpu, wall) send the difference of two snapshots; the others
//! send the change of their profile over the window, except the sample types the kind
//! keeps as they stand (the heap's `inuse_*`).
//!
//! Bounds, so that the host never waits on a backend: connecting times out after
//! `CONNECT_TIMEOUT` and a request after `REQUEST_TIMEOUT`; when the backend is down or
//! refuses, windows wait in a queue of at most `MAX_QUEUED` (`MAX_QUEUED_BYTES`), the
//! oldest dropped first and the drops counted in the next window's comments, and are sent
//! later with backoff; at exit and at a fatal SIGINT/SIGTERM the last window is pushed
//! within `EXIT_BOUND`, then the process goes on ending. One line says that the backend
//! failed, one that it is back; a fork child inherits what was said, and pushes its own
//! windows from the fork on.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use rprof_profile::Profile;

use super::{collect, name_all, Changes, Windows};
use crate::config::{Config, Protocol, Push};
use crate::kinds::{self, Context, Kind, Shape};
use crate::runtime::log::{info, warning};
use crate::signal_safe::lock::Lock;
use crate::signal_safe::sys;
use crate::symbols::encode::unix_now_ns;
use crate::symbols::symbolize;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long exit (or a fatal signal) waits for the last window to be pushed.
pub const EXIT_BOUND: Duration = Duration::from_secs(2);
const MAX_QUEUED: usize = 32;
const MAX_QUEUED_BYTES: usize = 16 << 20;
const FIRST_BACKOFF_NS: u64 = 500_000_000;
const MAX_BACKOFF_NS: u64 = 60_000_000_000;
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What push was asked for (set at load, read by the thread and by a fork child).
struct Setup {
    push: Push,
    /// service_name, host, and the user's labels (pid is added per process).
    service_name: String,
    host: String,
    labels: Vec<(String, String)>,
}

static SETUP: std::sync::OnceLock<Setup> = std::sync::OnceLock::new();

/// A window ready to send.
struct Window {
    /// The request body, gzip-compressed once (it may be sent more than once).
    body: Vec<u8>,
    /// What it holds, for the log.
    profiles: usize,
}

/// The pushing state of this process (a fork child replaces its parent's).
struct Pushing {
    /// `Window` kinds' snapshots at the previous window, and the others' profiles.
    before: Windows,
    changes: Changes,
    window_start_unix: i64,
    window_start_mono: u64,
    process_start_mono: u64,
    queue: VecDeque<Window>,
    /// Windows dropped since the last one made (said in the next one's comments).
    dropped: u64,
    dropped_total: u64,
    sent: u64,
    windows: u64,
}

static STATE: Lock<Option<Pushing>> = Lock::new(None);

/// The backend's failure was said (inherited by fork children, which do not repeat it).
static SAID_DOWN: AtomicBool = AtomicBool::new(false);
/// A refusal that retrying cannot fix (a 4xx) was said.
static SAID_REFUSED: AtomicBool = AtomicBool::new(false);

static WAKE: AtomicU32 = AtomicU32::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
/// The last window was asked for (exit, fatal signal) and, once it is sent or given up, done.
static FINAL_ASKED: AtomicBool = AtomicBool::new(false);
static FINAL_DONE: AtomicU32 = AtomicU32::new(0);
/// The last window may read the allocator's own figures: the process is exiting, not dying
/// of a signal whose thread may hold the allocator's locks.
static FINAL_ALLOCATOR_FREE: AtomicBool = AtomicBool::new(true);
/// The push thread runs (its job has not returned).
static RUNNING: AtomicBool = AtomicBool::new(false);

/// The push consumer.
pub struct Pusher;
pub static PUSH: Pusher = Pusher;

impl super::Consumer for Pusher {
    fn name(&self) -> &'static str {
        "push"
    }
    fn start(&self, cfg: &Config) -> bool {
        let Some(push) = &cfg.push else {
            return false;
        };
        if push.https && !cfg!(feature = "tls") {
            warning!(
                "RPROF_PUSH={} needs TLS, which this librprof was built without (build it with --features tls, or push over http to a local Alloy or collector); no push",
                push.endpoint
            );
            return false;
        }
        let _ = SETUP.set(Setup {
            push: push.clone(),
            service_name: cfg.service_name.clone().unwrap_or_else(program_name),
            host: host_name(),
            labels: cfg.labels.clone(),
        });
        *STATE.lock() = Some(new_state(sys::monotonic_ns(), unix_now_ns()));
        spawn()
    }
    fn reset_after_fork(&self) -> bool {
        if SETUP.get().is_none() {
            return false;
        }
        // SAFETY: the child has one thread: nothing holds the lock but a thread that is
        // gone; the parent's state (and its queue) is not the child's.
        unsafe { STATE.reset_in_fork_child() };
        *STATE.lock() = Some(new_state(sys::monotonic_ns(), unix_now_ns()));
        STOP.store(false, Ordering::Relaxed);
        FINAL_ASKED.store(false, Ordering::Relaxed);
        FINAL_DONE.store(0, Ordering::Relaxed);
        FINAL_ALLOCATOR_FREE.store(true, Ordering::Relaxed);
        RUNNING.store(false, Ordering::Relaxed);
        spawn()
    }
    fn finish(&self, ending: super::Ending) {
        if SETUP.get().is_none() {
            return;
        }
        finish(ending == super::Ending::Exit);
    }
    fn stop_threads(&self) {
        STOP.store(true, Ordering::Release);
        wake();
    }
}

fn new_state(mono: u64, unix: i64) -> Pushing {
    Pushing {
        before: Windows::default(),
        changes: Changes::new(),
        window_start_unix: unix,
        window_start_mono: mono,
        process_start_mono: mono,
        queue: VecDeque::new(),
        dropped: 0,
        dropped_total: 0,
        sent: 0,
        windows: 0,
    }
}

fn program_name() -> String {
    std::fs::read_link("/proc/self/exe")
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

fn spawn() -> bool {
    RUNNING.store(true, Ordering::Release);
    let ok = crate::runtime::own_threads::spawn_detached(c"rprof-push", || {
        let r = std::panic::catch_unwind(run);
        if r.is_err() {
            warning!("internal error in the push thread; pushing stopped");
        }
        RUNNING.store(false, Ordering::Release);
        FINAL_DONE.store(1, Ordering::Release);
        sys::futex_wake(&FINAL_DONE);
    });
    if !ok {
        RUNNING.store(false, Ordering::Release);
        warning!("cannot start the push thread; no push");
    }
    ok
}

fn wake() {
    WAKE.fetch_add(1, Ordering::Release);
    sys::futex_wake(&WAKE);
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
        .timeout_global(Some(timeout))
        .max_idle_connections(0)
        .http_status_as_error(true)
        .user_agent(format!("rprof/{VERSION}"))
        .build()
        .new_agent()
}

/// The push thread: a window every period; what could not be sent, again with backoff.
fn run() {
    let setup = SETUP.get().expect("push set up before its thread");
    let period_ns = u64::from(setup.push.period_s) * 1_000_000_000;
    let agent = agent(REQUEST_TIMEOUT);
    let mut next_window = sys::monotonic_ns() + period_ns;
    let mut retry_at = 0u64;
    let mut backoff = FIRST_BACKOFF_NS;
    loop {
        let seen = WAKE.load(Ordering::Acquire);
        let now = sys::monotonic_ns();
        let queued = STATE.lock().as_ref().is_some_and(|s| !s.queue.is_empty());
        let mut due = next_window;
        if queued {
            due = due.min(retry_at.max(now));
        }
        if due > now && !STOP.load(Ordering::Acquire) && !FINAL_ASKED.load(Ordering::Acquire) {
            sys::futex_wait(&WAKE, seen, due - now);
        }
        if STOP.load(Ordering::Acquire) {
            return;
        }
        if FINAL_ASKED.load(Ordering::Acquire) {
            let deadline = sys::monotonic_ns() + EXIT_BOUND.as_nanos() as u64;
            last_window(
                &agent,
                FINAL_ALLOCATOR_FREE.load(Ordering::Acquire),
                deadline,
            );
            return;
        }
        let now = sys::monotonic_ns();
        if now >= next_window {
            make_window(true);
            // A missed period (a long stop) is not made up for.
            next_window = (next_window + period_ns).max(now + period_ns / 2);
        }
        if now >= retry_at {
            if send_queued(&agent, None) {
                backoff = FIRST_BACKOFF_NS;
            } else {
                retry_at = sys::monotonic_ns() + backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF_NS);
            }
        }
    }
}

/// At exit or a fatal signal: has the push thread make and send the last window, waiting
/// at most `EXIT_BOUND`; where the thread no longer runs (stopped with the program's last
/// thread), does it here.
fn finish(allocator_free: bool) {
    if RUNNING.load(Ordering::Acquire) {
        FINAL_ALLOCATOR_FREE.store(allocator_free, Ordering::Release);
        FINAL_ASKED.store(true, Ordering::Release);
        wake();
        let deadline = sys::monotonic_ns() + EXIT_BOUND.as_nanos() as u64;
        while FINAL_DONE.load(Ordering::Acquire) == 0 {
            let now = sys::monotonic_ns();
            if now >= deadline {
                info!("the last push did not finish within {EXIT_BOUND:?}: the process ends without it");
                return;
            }
            sys::futex_wait(&FINAL_DONE, 0, (deadline - now).min(50_000_000));
        }
        return;
    }
    // Not from a fatal signal's handler (no thread of rprof's runs then): only at exit.
    if allocator_free {
        let deadline = sys::monotonic_ns() + EXIT_BOUND.as_nanos() as u64;
        last_window(&agent(EXIT_BOUND), true, deadline);
    }
}

fn last_window(agent: &ureq::Agent, allocator_free: bool, deadline: u64) {
    make_window(allocator_free);
    send_queued(agent, Some(deadline));
    let s = STATE.lock();
    if let Some(s) = s.as_ref() {
        info!(
            "pushed {} of {} windows to {}{}",
            s.sent,
            s.windows,
            SETUP.get().map_or("", |x| x.push.endpoint.as_str()),
            if s.dropped_total > 0 {
                format!(
                    " ({} dropped while it could not be reached)",
                    s.dropped_total
                )
            } else {
                String::new()
            }
        );
    }
}

/// Collects the window since the previous one and queues its request.
fn make_window(allocator_free: bool) {
    let Some(setup) = SETUP.get() else {
        return;
    };
    let mut guard = STATE.lock();
    let Some(s) = guard.as_mut() else {
        return;
    };
    let pushed = kinds::TABLE
        .iter()
        .copied()
        .filter(|k| k.enabled() && k.push_name().is_some());
    let now_mono = sys::monotonic_ns();
    let now_unix = unix_now_ns();
    let cx = Context {
        start_unix_ns: s.window_start_unix,
        duration_ns: now_mono.saturating_sub(s.window_start_mono) as i64,
        process_start_mono_ns: s.process_start_mono,
    };
    if allocator_free {
        crate::symbols::maps::prime_lookups();
    }
    let taken: Vec<_> = collect(pushed, allocator_free)
        .into_iter()
        .map(|(k, now)| (k, s.before.next(k, now, true)))
        .collect();
    let mut profiles: Vec<(&'static dyn Kind, Profile)> = Vec::new();
    {
        let mut sym = symbolize::SHARED.lock();
        let sym = symbolize::shared(&mut sym);
        name_all(&taken, sym);
        for (k, st) in &taken {
            let p = k.profile(st, &cx, sym);
            if k.shape() == Shape::Window {
                profiles.push((*k, p));
                continue;
            }
            let mut delta = s.changes.next(*k, p);
            delta.time_nanos = cx.start_unix_ns;
            delta.duration_nanos = cx.duration_ns;
            profiles.push((*k, delta));
        }
    }
    s.window_start_unix = now_unix;
    s.window_start_mono = now_mono;
    s.windows += 1;
    // Room first, so that the drops are said in this window.
    let dropped = make_room(&mut s.queue);
    s.dropped += dropped;
    s.dropped_total += dropped;
    if s.dropped > 0 {
        let note = format!(
            "rprof: {} earlier windows were dropped while the backend could not be reached",
            s.dropped
        );
        for (_, p) in profiles.iter_mut() {
            add_comment(p, &note);
        }
    }
    let body = rprof_profile::gzip(&encode(setup, &profiles, s.dropped, s.windows));
    s.dropped = 0;
    s.queue.push_back(Window {
        body,
        profiles: profiles.len(),
    });
}

/// Drops the oldest windows until one more fits the bounds (`MAX_QUEUED` windows, and
/// `MAX_QUEUED_BYTES` before it); returns how many went.
fn make_room(queue: &mut VecDeque<Window>) -> u64 {
    let mut dropped = 0;
    let mut bytes: usize = queue.iter().map(|w| w.body.len()).sum();
    while queue.len() >= MAX_QUEUED || (!queue.is_empty() && bytes > MAX_QUEUED_BYTES) {
        if let Some(w) = queue.pop_front() {
            bytes -= w.body.len();
        }
        dropped += 1;
    }
    dropped
}

fn add_comment(p: &mut Profile, text: &str) {
    p.string_table.push(text.to_owned());
    p.comment.push(p.string_table.len() as i64 - 1);
}

/// The request body (uncompressed) of one window.
fn encode(
    setup: &Setup,
    profiles: &[(&'static dyn Kind, Profile)],
    dropped: u64,
    seq: u64,
) -> Vec<u8> {
    let pid = std::process::id();
    let seed = (u64::from(pid) << 32) ^ seq ^ (unix_now_ns() as u64).rotate_left(17);
    match setup.push.protocol {
        Protocol::Pyroscope => {
            let series = profiles
                .iter()
                .enumerate()
                .map(|(i, (k, p))| {
                    let mut labels = vec![
                        (
                            "__name__".to_owned(),
                            k.push_name().unwrap_or("").to_owned(),
                        ),
                        // Already a window: the backend is not to take differences.
                        ("__delta__".to_owned(), "false".to_owned()),
                        ("service_name".to_owned(), setup.service_name.clone()),
                        ("host".to_owned(), setup.host.clone()),
                        ("pid".to_owned(), pid.to_string()),
                    ];
                    labels.extend(setup.labels.iter().cloned());
                    let id = format!("{:016x}{:08x}{:08x}", seed, seq, i);
                    (labels, rprof_profile::encode_gzip(p), id)
                })
                .collect();
            rprof_profile::push::pyroscope_request(series)
        }
        Protocol::Otlp => {
            let mut resource = vec![
                ("service.name".to_owned(), setup.service_name.clone()),
                ("host.name".to_owned(), setup.host.clone()),
            ];
            resource.extend(setup.labels.iter().cloned());
            let ps: Vec<rprof_profile::push::OtlpProfile<'_>> = profiles
                .iter()
                .enumerate()
                .map(|(i, (k, p))| {
                    let mut attributes = vec![
                        ("rprof.kind".to_owned(), k.name().to_owned()),
                        (
                            "pyroscope.profile.name".to_owned(),
                            k.push_name().unwrap_or("").to_owned(),
                        ),
                    ];
                    if dropped > 0 {
                        attributes.push(("rprof.dropped_windows".to_owned(), dropped.to_string()));
                    }
                    rprof_profile::push::OtlpProfile {
                        profile: p,
                        attributes,
                        id_seed: seed.wrapping_add(i as u64),
                    }
                })
                .collect();
            rprof_profile::push::otlp_request(&resource, i64::from(pid), VERSION, &ps)
        }
    }
}

/// Sends the queued windows, oldest first, until one fails (`deadline`: give up past it).
/// Returns whether the queue is empty.
fn send_queued(agent: &ureq::Agent, deadline: Option<u64>) -> bool {
    let setup = SETUP.get().expect("push set up");
    loop {
        let Some((body, n)) = STATE
            .lock()
            .as_ref()
            .and_then(|s| s.queue.front().map(|w| (w.body.clone(), w.profiles)))
        else {
            return true;
        };
        let timeout = match deadline {
            Some(d) => {
                let now = sys::monotonic_ns();
                if now >= d {
                    return false;
                }
                Duration::from_nanos(d - now).min(REQUEST_TIMEOUT)
            }
            None => REQUEST_TIMEOUT,
        };
        match send(agent, setup, body, timeout) {
            Ok(()) => {
                let mut g = STATE.lock();
                if let Some(s) = g.as_mut() {
                    s.queue.pop_front();
                    s.sent += 1;
                }
                drop(g);
                if SAID_DOWN.swap(false, Ordering::AcqRel) {
                    warning!("pushing to {} works again", setup.push.endpoint);
                }
                crate::runtime::log::debug!("pushed a window of {n} profiles");
            }
            Err(Failure::Refused(why)) => {
                // Retrying cannot fix it: the window goes, said once.
                let mut g = STATE.lock();
                if let Some(s) = g.as_mut() {
                    s.queue.pop_front();
                    s.dropped_total += 1;
                }
                drop(g);
                if !SAID_REFUSED.swap(true, Ordering::AcqRel) {
                    warning!(
                        "{} refused a push ({why}); its windows are dropped",
                        setup.push.endpoint
                    );
                }
            }
            Err(Failure::Retry(why)) => {
                if !SAID_DOWN.swap(true, Ordering::AcqRel) {
                    warning!(
                        "cannot push to {} ({why}); windows are kept (at most {MAX_QUEUED}) and sent when it answers",
                        setup.push.endpoint
                    );
                }
                return false;
            }
        }
    }
}

enum Failure {
    /// Down, timed out, or an answer that may change (5xx, 408, 429).
    Retry(String),
    /// Refused for good (another 4xx).
    Refused(String),
}

fn send(
    agent: &ureq::Agent,
    setup: &Setup,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), Failure> {
    let p = &setup.push;
    let mut req = agent
        .post(&p.endpoint)
        .config()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
        .build()
        .header("Content-Encoding", "gzip");
    req = match p.protocol {
        Protocol::Pyroscope => req
            .header("Content-Type", "application/proto")
            .header("Connect-Protocol-Version", "1"),
        Protocol::Otlp => req.header("Content-Type", "application/x-protobuf"),
    };
    // One Authorization header: the token's when both are given.
    if let Some((user, pass)) = p.basic.as_ref().filter(|_| p.token.is_none()) {
        use base64::Engine;
        let pair = format!("{user}:{}", pass.0);
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        req = req.header("Authorization", format!("Basic {encoded}"));
    }
    if let Some(t) = &p.token {
        req = req.header("Authorization", format!("Bearer {}", t.0));
    }
    if let Some(t) = &p.tenant {
        req = req.header("X-Scope-OrgID", t.as_str());
    }
    match req.send(&body[..]) {
        Ok(_) => Ok(()),
        Err(ureq::Error::StatusCode(code))
            if (400..500).contains(&code) && code != 408 && code != 429 =>
        {
            Err(Failure::Refused(format!("HTTP {code}")))
        }
        Err(ureq::Error::StatusCode(code)) => Err(Failure::Retry(format!("HTTP {code}"))),
        Err(e) => Err(Failure::Retry(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(bytes: usize) -> Window {
        Window {
            body: vec![0; bytes],
            profiles: 1,
        }
    }

    /// The queue stays within its bounds, the oldest windows going first, counted.
    #[test]
    fn the_queue_drops_its_oldest_past_its_bounds() {
        let mut q = VecDeque::new();
        let mut dropped = 0;
        for i in 0..MAX_QUEUED + 8 {
            dropped += make_room(&mut q);
            let mut w = window(10);
            w.profiles = i;
            q.push_back(w);
        }
        assert_eq!((q.len(), dropped), (MAX_QUEUED, 8));
        assert_eq!(q.front().unwrap().profiles, 8, "the oldest went first");
        let mut q: VecDeque<Window> = (0..3).map(|_| window(MAX_QUEUED_BYTES / 2)).collect();
        assert_eq!(make_room(&mut q), 1);
        assert_eq!(make_room(&mut q), 0);
    }
}
