//! What the profile server answers, path by path, as Go 1.22's net/http/pprof does
//! (`src/net/http/pprof/pprof.go`): the index, `cmdline`, `symbol`, and every path of every
//! kind in `kinds::TABLE`. A `Window` kind's path (`profile`) is the window of the next
//! `seconds`; a cumulative kind's (`heap`, `allocs`, `block`, `mutex`, `threadcreate`) is
//! the profile since the start, with `seconds=N` Go's delta over the next N seconds and
//! `debug=1` Go's legacy text; Pyroscope's `delta_*` paths give the change since the
//! previous request. Every profile is built from the kinds' snapshots, so concurrent
//! requests and the files never disturb one another's windows.

use std::fmt::Write as _;
use std::time::Duration;

use rprof_profile::Profile;

use super::collect;
use crate::kinds::{self, Context, Kind, Path, Shape, State};
use crate::signal_safe::lock::Lock;
use crate::signal_safe::sys;
use crate::symbols::encode::{json_string, unix_now_ns};
use crate::symbols::symbolize;

pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Vec<u8>,
}

pub struct Response {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// Longest window a request may ask for (Go refuses one beyond its server's WriteTimeout)./// Longest window a request may ask for (Go refuses one beyond its server's WriteTimeout).
const MAX_SECONDS: u64 = 3600;

impl Response {
    pub fn bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Payload Too Large",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.headers {
            let _ = write!(out, "{k}: {v}\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Go's serveError: text/plain with `X-Go-Pprof: 1`.
pub fn error(status: u16, text: &str) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        headers: vec![("X-Go-Pprof", "1".into())],
        body: format!("{text}\n").into_bytes(),
    }
}

fn text(body: String) -> Response {
    Response {
        status: 200,
        content_type: "text/plain; charset=utf-8",
        headers: Vec::new(),
        body: body.into_bytes(),
    }
}

fn profile_file(name: &str, p: &Profile) -> Response {
    // A path of its own (`/debug/fgprof`): its last part.
    let name = name.rsplit('/').next().unwrap_or(name);
    Response {
        status: 200,
        content_type: "application/octet-stream",
        headers: vec![(
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        )],
        body: rprof_profile::encode_gzip(p),
    }
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
/// The kind and path a name under `/debug/pprof/` serves.
fn find(name: &str) -> Option<(&'static dyn Kind, &'static Path)> {
    kinds::TABLE
        .iter()
        .find_map(|k| k.paths().iter().find(|p| p.name == name).map(|p| (*k, p)))
}

pub fn route(req: &Request) -> Response {
    if req.method != "GET" && req.method != "POST" && req.method != "HEAD" {
        let mut r = error(405, "Method Not Allowed");
        r.headers.push(("Allow", "GET, POST".into()));
        return r;
    }
    let Some(name) = req.path.strip_prefix("/debug/pprof/") else {
        return match req.path.as_str() {
            "/debug/pprof" => index(),
            "/debug/vars" => vars(),
            // A kind served at a path of its own too (fgprof's `/debug/fgprof`).
            other => match find(other) {
                Some((k, path)) => serve(k, path, param(&req.query, "seconds"), 0),
                None => error(404, "404 page not found"),
            },
        };
    };
    let debug: i64 = param(&req.query, "debug")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let seconds = param(&req.query, "seconds");
    match name {
        "" => index(),
        "cmdline" => text(cmdline().join("\0")),
        "symbol" => symbol(req),
        _ => match find(name) {
            Some((k, path)) => serve(k, path, seconds, debug),
            None => error(404, "Unknown profile"),
        },
    }
}

fn serve(k: &'static dyn Kind, path: &Path, seconds: Option<&str>, debug: i64) -> Response {
    match k.shape() {
        Shape::Window => {
            if !k.enabled() {
                return error(
                    500,
                    &format!(
                        "Could not enable {} profiling: {} is not in RPROF_PROFILES",
                        k.name().to_uppercase(),
                        k.name()
                    ),
                );
            }
            let secs = seconds
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|&s| s > 0)
                .unwrap_or(30);
            if secs > MAX_SECONDS {
                return error(400, "profile duration exceeds server's WriteTimeout");
            }
            profile_file(path.name, &window(k, secs))
        }
        Shape::Instant => {
            let s = k.snapshot(true);
            if debug > 0 {
                if let Some(t) = with_symbolizer(|sym| k.text(&s, debug, sym)) {
                    return text(t);
                }
            }
            profile_file(path.name, &profile_of(k, path, &s, context(0, 0)))
        }
        Shape::Cumulative => {
            if !k.enabled() {
                return error(404, "Unknown profile");
            }
            if path.name.starts_with("delta_") {
                return delta_since_last(k, path);
            }
            if let Some(v) = seconds {
                let secs = match v.parse::<u64>() {
                    Ok(s) if s > 0 => s,
                    _ => {
                        return error(
                            400,
                            "invalid value for \"seconds\" - must be a positive integer",
                        )
                    }
                };
                if debug != 0 {
                    return error(400, "seconds and debug params are incompatible");
                }
                if secs > MAX_SECONDS {
                    return error(400, "profile duration exceeds server's WriteTimeout");
                }
                let before = cumulative(k, path);
                std::thread::sleep(Duration::from_secs(secs));
                let after = cumulative(k, path);
                return profile_file(
                    &format!("delta-{}", path.name),
                    &rprof_profile::subtract(after, &before),
                );
            }
            if debug > 0 {
                let s = k.snapshot(true);
                if let Some(t) = with_symbolizer(|sym| k.text(&s, debug, sym)) {
                    return text(t);
                }
            }
            profile_file(path.name, &cumulative(k, path))
        }
    }
}

/// Runs `f` with the shared symbolizer (see `symbolize::lock_shared`).
fn with_symbolizer<R>(f: impl FnOnce(&mut symbolize::Symbolizer) -> R) -> R {
    let mut guard = symbolize::lock_shared();
    f(symbolize::shared(&mut guard))
}

fn context(start_unix_ns: i64, duration_ns: i64) -> Context {
    Context {
        start_unix_ns,
        duration_ns,
        process_start_mono_ns: 0,
    }
}

/// The profile of `path` from a snapshot (or window) `s` of `k`: the kind's first
/// profile, with the path's default sample type.
fn profile_of(k: &'static dyn Kind, path: &Path, s: &State, cx: Context) -> Profile {
    let mut p = with_symbolizer(|sym| {
        let mut addrs = Vec::new();
        k.addresses(s, &mut addrs);
        addrs.sort_unstable();
        addrs.dedup();
        sym.resolve_all(addrs);
        k.profile(s, &cx, sym)
    });
    if let Some(t) = path.default_sample_type {
        if let Some(i) = p.string_table.iter().position(|x| x == t) {
            p.default_sample_type = i as i64;
        }
    }
    p
}

/// The cumulative profile of a kind now, as the files hold it.
fn cumulative(k: &'static dyn Kind, path: &Path) -> Profile {
    let s = k.snapshot(true);
    profile_of(k, path, &s, context(unix_now_ns(), 0))
}

/// Pyroscope's `delta_*` paths: the change since the previous answer on the same path
/// (the first answer: everything so far).
fn delta_since_last(k: &'static dyn Kind, path: &Path) -> Response {
    static LAST: Lock<super::Changes> = Lock::new(super::Changes::new());
    let now = cumulative(k, path);
    let out = LAST.lock().next(k, now);
    profile_file(path.name, &out)
}

/// A `Window` kind's profile of the next `secs` seconds: the difference of two snapshots,
/// so that the files' windows (and other requests') are untouched.
fn window(k: &'static dyn Kind, secs: u64) -> Profile {
    let before = collect([k].into_iter(), false).pop().map(|t| t.1);
    let start_unix = unix_now_ns();
    let start = sys::monotonic_ns();
    std::thread::sleep(Duration::from_secs(secs));
    let Some((_, after)) = collect([k].into_iter(), false).pop() else {
        return Profile::default();
    };
    let duration = sys::monotonic_ns().saturating_sub(start) as i64;
    let w = k.window(before.as_ref(), &after);
    let path = &k.paths()[0];
    profile_of(k, path, &w, context(start_unix, duration))
}

fn cmdline() -> Vec<String> {
    std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// pprof's remote symbolization: `num_symbols: 1`, then `0x<pc> <function>` for each
/// address of the request (POST body or query, `+`-separated) that names a function.
fn symbol(req: &Request) -> Response {
    let mut out = String::from("num_symbols: 1\n");
    let input = if req.method == "POST" {
        String::from_utf8_lossy(&req.body).into_owned()
    } else {
        req.query.clone()
    };
    let pcs: Vec<u64> = input
        .split('+')
        .filter_map(|w| {
            let w = w.trim();
            let hex = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X"))?;
            u64::from_str_radix(hex, 16).ok()
        })
        .collect();
    if !pcs.is_empty() {
        let mut guard = symbolize::lock_shared();
        let frames = symbolize::shared(&mut guard).resolve_all(pcs.iter().copied());
        for pc in pcs {
            if let Some(name) = frames.get(&pc).and_then(|f| f.lines.last()) {
                let _ = writeln!(out, "{pc:#x} {}", name.function);
            }
        }
    }
    text(out)
}

fn index() -> Response {
    let mut rows = String::new();
    let mut descriptions = String::new();
    // As Go's index: every profile by name, with its count and what it is.
    let mut entries: Vec<(&str, Option<usize>, bool, &str, bool)> = vec![(
        "cmdline",
        None,
        true,
        "The command line invocation of the current program",
        false,
    )];
    for k in kinds::TABLE {
        for p in k
            .paths()
            .iter()
            .filter(|p| !p.name.starts_with("delta_") && !p.name.starts_with('/'))
        {
            entries.push((
                p.name,
                k.count(),
                k.enabled(),
                p.about.unwrap_or(k.about()),
                k.shape() == Shape::Window,
            ));
        }
    }
    entries.sort_by_key(|e| e.0);
    for (name, count, on, what, window) in entries {
        let href = if window {
            name.to_string()
        } else {
            format!("{name}?debug=1")
        };
        if on {
            let count = count.map_or(String::new(), |c| c.to_string());
            let _ = writeln!(
                rows,
                "<tr><td>{count}</td><td><a href='{href}'>{name}</a></td></tr>"
            );
        }
        let _ = writeln!(
            descriptions,
            "<li><div class=profile-name>{name}: </div> {what}</li>"
        );
    }
    let body = format!(
        "<html>\n<head>\n<title>/debug/pprof/</title>\n<style>\n.profile-name{{\n\tdisplay:inline-block;\n\twidth:6rem;\n}}\n</style>\n</head>\n<body>\n/debug/pprof/\n<br>\n<p>Set debug=1 as a query parameter to export in legacy text format</p>\n<br>\nTypes of profiles available:\n<table>\n<thead><td>Count</td><td>Profile</td></thead>\n{rows}</table>\n<a href=\"goroutine?debug=2\">full goroutine stack dump</a>\n<br>\n<p>\nProfile Descriptions:\n<ul>\n{descriptions}</ul>\n</p>\n</body>\n</html>\n"
    );
    Response {
        status: 200,
        content_type: "text/html; charset=utf-8",
        headers: Vec::new(),
        body: body.into_bytes(),
    }
}

/// Go's expvar page: `cmdline` and `memstats`.
fn vars() -> Response {
    let args: Vec<String> = cmdline().iter().map(|a| json_string(a)).collect();
    let mut stats = Vec::new();
    for (k, v) in kinds::memstats(true) {
        let value = match k {
            "PauseNs" | "PauseEnd" => format!("[{}]", vec!["0"; 256].join(",")),
            "DebugGC" => "false".into(),
            "EnableGC" => "false".into(),
            _ => v.to_string(),
        };
        stats.push(format!("\"{k}\":{value}"));
    }
    stats.push("\"EnableGC\":false".into());
    let body = format!(
        "{{\n\"cmdline\": [{}],\n\"memstats\": {{{}}}\n}}\n",
        args.join(","),
        stats.join(",")
    );
    Response {
        status: 200,
        content_type: "application/json; charset=utf-8",
        headers: Vec::new(),
        body: body.into_bytes(),
    }
}
