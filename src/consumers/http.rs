//! The profile server (`RPROF_HTTP`): a consumer of the sources, like the files, serving
//! Go's net/http/pprof paths (see `http_pages`) on threads of rprof's own.
//!
//! Bounds, so that no client can hold it or the program: one request per connection;
//! requests are read on the server's thread with poll (at most `MAX_PENDING` waiting, the
//! oldest dropped first), their headers within `MAX_HEADER` bytes and `READ_TIMEOUT`; at
//! most `MAX_CONNECTIONS` served at once, each on a thread (more get 503); a POST body
//! within `MAX_BODY`, every write within `WRITE_TIMEOUT`.
//! A fork child closes the listener and the connections it inherited; with `%p` in
//! `RPROF_HTTP` it then serves on its own address (the pattern with its pid).
//!
//! A fixed address already taken is said once per lineage of processes: a process whose
//! parent runs rprof with the same `RPROF_HTTP` (a shell script's commands, a wrapper's
//! children) says it at `RPROF_LOG=info` only, since the parent served it or said so.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::HttpAddr;
use crate::consumers::http_pages::{self, Request, Response};
use crate::runtime::log::{info, warning};

/// Requests served at once, each on a thread.
const MAX_CONNECTIONS: usize = 32;
/// Connections whose request has not arrived yet, on the server's thread.
const MAX_PENDING: usize = 256;
const MAX_HEADER: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The listening socket (-1: none).
static LISTENER: AtomicI32 = AtomicI32::new(-1);
/// The open connections, waiting or served (-1: free slot), closed by a fork child.
static CONNECTIONS: [AtomicI32; MAX_PENDING + MAX_CONNECTIONS] =
    [const { AtomicI32::new(-1) }; MAX_PENDING + MAX_CONNECTIONS];
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// `RPROF_HTTP` with `%p`, for fork children (set once at load).
static PER_PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// At load: fork children serve on `pattern` with their own pid.
/// The HTTP consumer (`RPROF_HTTP`).
pub struct Http;
pub static HTTP: Http = Http;

impl super::Consumer for Http {
    fn name(&self) -> &'static str {
        "http"
    }
    fn start(&self, cfg: &crate::config::Config) -> bool {
        let Some(addr) = &cfg.http else {
            return false;
        };
        if let Some(pattern) = &cfg.http_per_process {
            serve_each_process(pattern);
        }
        start(addr)
    }
    fn reset_after_fork(&self) -> bool {
        reset_after_fork()
    }
    fn finish(&self, _ending: super::Ending) {
        remove_own_socket();
    }
}

/// The Unix socket this process bound: its path (a leaked C string) and the pid that bound
/// it. Removed when that process ends (a fork child's end leaves its parent's), so that the
/// next run's bind of the path is not refused.
static UNIX_PATH: std::sync::atomic::AtomicPtr<libc::c_char> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
static UNIX_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Async-signal-safe (a dying process removes its socket too).
fn remove_own_socket() {
    let path = UNIX_PATH.load(Ordering::Acquire);
    if !path.is_null() && UNIX_PID.load(Ordering::Acquire) == std::process::id() {
        // SAFETY: a NUL-terminated path leaked at bind; unlink only reads it.
        unsafe { libc::unlink(path) };
    }
}

pub fn serve_each_process(pattern: &str) {
    let _ = PER_PROCESS.set(pattern.to_owned());
}

/// Binds `addr` and starts serving; whether it does. A failure is one `rprof:` line (at
/// info level when the parent process already served or said it); the program runs on.
pub fn start(addr: &HttpAddr) -> bool {
    let (fd, shown) = match bind(addr) {
        Ok(v) => v,
        Err(e) => {
            if e.kind() == std::io::ErrorKind::AddrInUse && parent_has_the_same_server() {
                info!(
                    "cannot serve profiles on {}: {e} (the parent process, with the same RPROF_HTTP, serves it or said so)",
                    show(addr)
                );
            } else {
                warning!(
                    "cannot serve profiles on {}: {e}; profile files are still written",
                    show(addr)
                );
            }
            return false;
        }
    };
    LISTENER.store(fd, Ordering::Release);
    let open = matches!(addr, HttpAddr::Tcp(a) if a.ip().is_unspecified());
    let note = if open {
        " (every interface: other hosts can reach it)"
    } else {
        ""
    };
    if !crate::runtime::own_threads::spawn_detached(c"rprof-http", move || accept_loop(fd)) {
        warning!("cannot start the profile server's thread; profile files are still written");
        return false;
    }
    warning!("serving profiles on {shown}/debug/pprof/{note}");
    true
}

/// Whether the parent process runs rprof (its LD_PRELOAD and RPROF_HTTP, as it started,
/// are this process's): it then served this address or said why not.
fn parent_has_the_same_server() -> bool {
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    let Ok(theirs) = std::fs::read(format!("/proc/{ppid}/environ")) else {
        return false;
    };
    let theirs: Vec<&[u8]> = theirs.split(|&b| b == 0).collect();
    ["LD_PRELOAD", "RPROF_HTTP"].iter().all(|k| {
        let Some(mine) = std::env::var_os(k) else {
            return false;
        };
        let mut want = format!("{k}=").into_bytes();
        want.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(mine.as_os_str()));
        theirs.contains(&want.as_slice())
    })
}

fn show(addr: &HttpAddr) -> String {
    match addr {
        HttpAddr::Tcp(a) => format!("http://{a}"),
        HttpAddr::Unix(p) => format!("unix:{}", p.display()),
    }
}

fn bind(addr: &HttpAddr) -> std::io::Result<(i32, String)> {
    match addr {
        HttpAddr::Tcp(a) => {
            let l = std::net::TcpListener::bind(a)?;
            let shown = format!("http://{}", l.local_addr()?);
            Ok((std::os::fd::IntoRawFd::into_raw_fd(l), shown))
        }
        HttpAddr::Unix(path) => {
            let bound = match bind_unix(path) {
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && stale(path) => {
                    // A socket file that no process listens on (left by a process that
                    // died): what a server does with its own stale socket.
                    let _ = std::fs::remove_file(path);
                    bind_unix(path)
                }
                r => r,
            }?;
            if let Ok(c) =
                std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
            {
                UNIX_PID.store(std::process::id(), Ordering::Release);
                UNIX_PATH.store(c.into_raw(), Ordering::Release);
            }
            Ok(bound)
        }
    }
}

/// Whether `path` is a Unix socket that nothing listens on.
fn stale(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
        && std::os::unix::net::UnixStream::connect(path)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// Binds and listens on the Unix socket `path`, mode 0600.
fn bind_unix(path: &std::path::Path) -> std::io::Result<(i32, String)> {
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    // SAFETY: sockaddr_un is plain data.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= sa.sun_path.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path too long",
        ));
    }
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, &b) in sa.sun_path.iter_mut().zip(bytes) {
        *d = b as libc::c_char;
    }
    // SAFETY: a new socket of our own.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fchmod before bind gives the socket file mode 0600 from its creation
    // (Linux takes the inode's mode at bind); bind reads `sa`; listen on our fd.
    let rc = unsafe {
        libc::fchmod(fd, 0o600);
        let rc = libc::bind(
            fd,
            (&sa as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        );
        if rc == 0 {
            libc::listen(fd, 64)
        } else {
            rc
        }
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: our fd, not handed out.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    Ok((fd, format!("unix:{}", path.display())))
}

/// A connection whose request has not fully arrived yet.
struct Pending {
    fd: i32,
    slot: usize,
    buf: Vec<u8>,
    deadline: Instant,
}

/// Accepts connections and reads their request headers, all on the server's thread with
/// poll(2): a silent or slow client costs a descriptor, never a thread. A complete request
/// goes to a thread of its own (profiles with seconds=N take that long).
fn accept_loop(listener: i32) {
    // Non-blocking, so that accept_all takes every waiting connection and returns.
    // SAFETY: fcntl on our own listening socket.
    unsafe {
        let flags = libc::fcntl(listener, libc::F_GETFL);
        libc::fcntl(listener, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut pending: Vec<Pending> = Vec::new();
    loop {
        let mut fds: Vec<libc::pollfd> = std::iter::once(listener)
            .chain(pending.iter().map(|p| p.fd))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let now = Instant::now();
        let wait = pending
            .iter()
            .map(|p| p.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        // SAFETY: poll reads and writes `fds`, of the length given.
        let n = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                wait.as_millis() as i32 + 1,
            )
        };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
        let now = Instant::now();
        // Connections first (their indices in `fds` follow `pending`), then new ones.
        let mut i = 0;
        let mut next = Vec::with_capacity(pending.len());
        for mut p in pending.drain(..) {
            i += 1;
            let readable = fds[i].revents != 0;
            match if readable {
                read_more(&mut p)
            } else {
                Progress::Waiting
            } {
                Progress::Waiting if now >= p.deadline => {
                    finish(p, Some(http_pages::error(408, "request timeout")))
                }
                Progress::Waiting => next.push(p),
                Progress::Closed => finish(p, None),
                Progress::Bad(r) => finish(p, Some(r)),
                Progress::Complete => hand_over(p),
            }
        }
        pending = next;
        if fds[0].revents != 0 {
            accept_all(listener, &mut pending, now);
        }
    }
}

enum Progress {
    Waiting,
    Closed,
    Bad(Response),
    Complete,
}

/// Reads what arrived on a connection (it is non-blocking) and checks the header.
fn read_more(p: &mut Pending) -> Progress {
    let mut chunk = [0u8; 4096];
    loop {
        // SAFETY: read into our buffer of the length given.
        let n = unsafe { libc::read(p.fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n == 0 {
            return Progress::Closed;
        }
        if n < 0 {
            let e = std::io::Error::last_os_error().raw_os_error();
            if e == Some(libc::EINTR) {
                continue;
            }
            if e == Some(libc::EAGAIN) {
                break;
            }
            return Progress::Closed;
        }
        p.buf.extend_from_slice(&chunk[..n as usize]);
        if p.buf.len() > MAX_HEADER {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    match httparse::Request::new(&mut headers).parse(&p.buf) {
        Ok(httparse::Status::Complete(_)) => Progress::Complete,
        Ok(httparse::Status::Partial) if p.buf.len() <= MAX_HEADER => Progress::Waiting,
        Ok(httparse::Status::Partial) => {
            Progress::Bad(http_pages::error(431, "request header too large"))
        }
        Err(_) => Progress::Bad(http_pages::error(400, "bad request")),
    }
}

/// Accepts every connection waiting, each non-blocking, into `pending` (the oldest dropped
/// when it is full).
fn accept_all(listener: i32, pending: &mut Vec<Pending>, now: Instant) {
    loop {
        // SAFETY: accept4 on our listening socket; the new fd is ours.
        let c = unsafe {
            libc::accept4(
                listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        };
        if c < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR | libc::ECONNABORTED) => continue,
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    // Out of descriptors: give up the oldest waiting client, and wait a bit.
                    if !pending.is_empty() {
                        finish(pending.remove(0), None);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    return;
                }
                _ => return,
            }
        }
        if pending.len() >= MAX_PENDING {
            finish(pending.remove(0), None);
        }
        let Some(slot) = register(c) else {
            // SAFETY: c is ours and registered nowhere.
            unsafe { libc::close(c) };
            continue;
        };
        pending.push(Pending {
            fd: c,
            slot,
            buf: Vec::new(),
            deadline: now + READ_TIMEOUT,
        });
    }
}

/// Answers (if there is an answer) and closes a connection still on the server's thread.
fn finish(p: Pending, response: Option<Response>) {
    if let Some(r) = response {
        if set_blocking_with_timeouts(p.fd).is_ok() {
            // SAFETY: fd is the connection, owned by its slot; ManuallyDrop keeps it open.
            let mut conn = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(p.fd) });
            let _ = conn.write_all(&r.bytes());
        }
    }
    unregister(p.slot);
}

/// Gives a connection whose header has arrived to a thread of its own (at most
/// MAX_CONNECTIONS at once: more get 503).
fn hand_over(p: Pending) {
    if ACTIVE.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
        return finish(p, Some(http_pages::error(503, "too many requests at once")));
    }
    let Pending { fd, slot, buf, .. } = p;
    // jemalloc gives every thread that calls it a thread cache, and may give it an arena of
    // its own: its statistics are read here, on the server's long-lived thread, so that
    // the short-lived thread that answers never calls jemalloc (and its figures are not
    // swollen by the answering).
    let jemalloc = crate::symbols::maps::jemalloc_stats();
    let spawned = crate::runtime::own_threads::spawn_detached(c"rprof-http-conn", move || {
        crate::symbols::maps::preset_jemalloc_stats(jemalloc);
        serve(fd, buf);
        unregister(slot);
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
    });
    if !spawned {
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
        unregister(slot);
    }
}

/// Records a connection's fd (so that a fork child can close it); its slot.
fn register(fd: i32) -> Option<usize> {
    CONNECTIONS.iter().position(|s| {
        s.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Closes a connection and frees its slot.
fn unregister(slot: usize) {
    let fd = CONNECTIONS[slot].swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        // SAFETY: the connection's fd, closed once (the swap makes this the only closer).
        unsafe { libc::close(fd) };
    }
}

fn set_blocking_with_timeouts(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl on our own socket.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    for (opt, d) in [
        (libc::SO_RCVTIMEO, READ_TIMEOUT),
        (libc::SO_SNDTIMEO, WRITE_TIMEOUT),
    ] {
        let tv = libc::timeval {
            tv_sec: d.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: setsockopt reads a timeval of the given size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reads the rest of a request whose header is in `buf` (its body, if any), answers it,
/// and leaves `fd` to the caller.
fn serve(fd: i32, buf: Vec<u8>) {
    if set_blocking_with_timeouts(fd).is_err() {
        return;
    }
    // SAFETY: fd is the connection, owned by the caller's slot; ManuallyDrop keeps it open.
    let mut conn = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    let response = match read_request(&mut *conn, buf) {
        Ok(Some(req)) => http_pages::route(&req),
        Ok(None) => return,
        Err(r) => r,
    };
    let _ = conn.write_all(&response.bytes());
    // SAFETY: shutting down our own connection so the client sees the end at once.
    unsafe { libc::shutdown(conn.as_raw_fd(), libc::SHUT_WR) };
}

/// The request whose complete header is in `buf`, its body read from `conn`.
fn read_request(conn: &mut impl Read, mut buf: Vec<u8>) -> Result<Option<Request>, Response> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(&buf) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return Err(http_pages::error(400, "bad request")),
    };
    let content_length = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0);
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("/").to_string();
    if content_length > MAX_BODY {
        return Err(http_pages::error(413, "request body too large"));
    }
    let mut body = buf.split_off(head_len);
    let mut chunk = [0u8; 4096];
    while body.len() < content_length {
        if Instant::now() > deadline {
            return Err(http_pages::error(408, "request timeout"));
        }
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(None),
        }
    }
    body.truncate(content_length);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Ok(Some(Request {
        method,
        path,
        query,
        body,
    }))
}

/// In a fork child: the listener and the parent's connections are not the child's (its
/// server thread does not exist here).
/// Whether the child serves (with `%p`: on its own address).
pub fn reset_after_fork() -> bool {
    close_inherited();
    let Some(pattern) = PER_PROCESS.get() else {
        return false;
    };
    let pid = crate::signal_safe::sys::getpid();
    crate::config::parse_http(&pattern.replace("%p", &pid.to_string())).is_some_and(|a| start(&a))
}

fn close_inherited() {
    let fd = LISTENER.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    LISTENER.store(-1, Ordering::Relaxed);
    // SAFETY: closing fds rprof opened; the child has no thread that uses them.
    unsafe { libc::close(fd) };
    for c in &CONNECTIONS {
        let fd = c.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: as above.
            unsafe { libc::close(fd) };
        }
    }
    ACTIVE.store(0, Ordering::Relaxed);
}
