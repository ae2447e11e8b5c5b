//! The profile server (`RPROF_HTTP`): a consumer of the sources, like the files, serving
//! Go's net/http/pprof paths (see `http_pages`) on threads of rprof's own.
//!
//! Bounds, so that no client can hold it or the program: one request per connection, at
//! most `MAX_CONNECTIONS` served at once (more get 503), headers within `MAX_HEADER` bytes
//! and `READ_TIMEOUT`, a POST body within `MAX_BODY`, every write within `WRITE_TIMEOUT`.
//! A fork child closes the listener and the connections it inherited.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::HttpAddr;
use crate::http_pages::{self, Request, Response};
use crate::log::warning;

const MAX_CONNECTIONS: usize = 32;
const MAX_HEADER: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The listening socket (-1: none).
static LISTENER: AtomicI32 = AtomicI32::new(-1);
/// The connections being served (-1: free slot), closed by a fork child.
static CONNECTIONS: [AtomicI32; MAX_CONNECTIONS] = [const { AtomicI32::new(-1) }; MAX_CONNECTIONS];
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Binds `addr` and starts serving; whether it does. A failure is one `rprof:` line; the
/// program runs on.
pub fn start(addr: &HttpAddr) -> bool {
    let (fd, shown) = match bind(addr) {
        Ok(v) => v,
        Err(e) => {
            warning!(
                "cannot serve profiles on {}: {e}; profile files are still written",
                show(addr)
            );
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
    if !crate::own_threads::spawn_detached(c"rprof-http", move || accept_loop(fd)) {
        warning!("cannot start the profile server's thread; profile files are still written");
        return false;
    }
    warning!("serving profiles on {shown}/debug/pprof/{note}");
    true
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
            let fd =
                unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
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
            let _ =
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
            Ok((fd, format!("unix:{}", path.display())))
        }
    }
}

fn accept_loop(fd: i32) {
    loop {
        // SAFETY: accept4 on our listening socket; the new fd is ours.
        let c = unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if c < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR | libc::ECONNABORTED | libc::EAGAIN) => continue,
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                _ => return,
            }
        }
        let Some(slot) = take_slot(c) else {
            // SAFETY: c is ours.
            let mut s = unsafe { std::fs::File::from_raw_fd(c) };
            let r = http_pages::error(503, "too many connections");
            let _ = set_timeouts(c);
            let _ = s.write_all(&r.bytes());
            continue;
        };
        let spawned = crate::own_threads::spawn_detached(c"rprof-http-conn", move || {
            serve(c);
            release_slot(slot);
        });
        if !spawned {
            release_slot(slot);
        }
    }
}

fn take_slot(fd: i32) -> Option<usize> {
    if ACTIVE.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    let slot = CONNECTIONS.iter().position(|s| {
        s.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    });
    if slot.is_none() {
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
    }
    slot
}

fn release_slot(slot: usize) {
    let fd = CONNECTIONS[slot].swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        // SAFETY: the connection's fd, closed once (the swap makes this the only closer).
        unsafe { libc::close(fd) };
    }
    ACTIVE.fetch_sub(1, Ordering::AcqRel);
}

fn set_timeouts(fd: i32) -> std::io::Result<()> {
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

/// Reads one request from the connection `fd`, answers it and leaves `fd` to the caller.
fn serve(fd: i32) {
    if set_timeouts(fd).is_err() {
        return;
    }
    // SAFETY: fd is the connection, owned by the caller's slot; ManuallyDrop keeps it open.
    let mut conn = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    let response = match read_request(&mut *conn) {
        Ok(Some(req)) => http_pages::route(&req),
        Ok(None) => return,
        Err(r) => r,
    };
    let _ = conn.write_all(&response.bytes());
    // SAFETY: shutting down our own connection so the client sees the end at once.
    unsafe { libc::shutdown(conn.as_raw_fd(), libc::SHUT_WR) };
}

fn read_request(conn: &mut impl Read) -> Result<Option<Request>, Response> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (head_len, method, target, content_length) = loop {
        if Instant::now() > deadline {
            return Err(http_pages::error(408, "request timeout"));
        }
        let n = match conn.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(None),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let length = req
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
                break (
                    len,
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("/").to_string(),
                    length,
                );
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEADER => continue,
            Ok(httparse::Status::Partial) => {
                return Err(http_pages::error(431, "request header too large"))
            }
            Err(_) => return Err(http_pages::error(400, "bad request")),
        }
    };
    if content_length > MAX_BODY {
        return Err(http_pages::error(413, "request body too large"));
    }
    let mut body = buf.split_off(head_len);
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
pub fn reset_after_fork() {
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
