//! What the profile server answers, path by path, as Go 1.22's net/http/pprof does
//! (`src/net/http/pprof/pprof.go`): the index, `profile` (a CPU window), the cumulative
//! `heap`, `allocs`, `block` and `mutex` (`seconds=N`: Go's delta over the next N seconds;
//! `debug=1`: Go's legacy text), Pyroscope's `delta_*` paths, `cmdline` and `symbol`.
//! Every profile is built from the sources' snapshots, so concurrent requests and the
//! files never disturb one another's windows.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use rprof_profile::Profile;

use std::sync::OnceLock;

use crate::config::Profiles;
use crate::signal_safe::lock::Lock;
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

/// Longest window a request may ask for (Go refuses one beyond its server's WriteTimeout).
const MAX_SECONDS: u64 = 3600;

/// Which kinds the configuration turned on (set at load, before the server starts).
pub static ENABLED: OnceLock<Profiles> = OnceLock::new();

fn enabled() -> Profiles {
    ENABLED.get().copied().unwrap_or(Profiles {
        cpu: false,
        heap: false,
        block: false,
        mutex: false,
    })
}

/// Whether the cumulative kind behind a path (`heap`, `allocs`, `block`, `mutex`) is on.
fn kind_on(kind: &str) -> bool {
    let e = enabled();
    match kind {
        "heap" | "allocs" => e.heap,
        "block" => e.block,
        "mutex" => e.mutex,
        _ => false,
    }
}

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
            _ => error(404, "404 page not found"),
        };
    };
    let debug: i64 = param(&req.query, "debug")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let seconds = param(&req.query, "seconds");
    match name {
        "" => index(),
        "cmdline" => text(cmdline().join("\0")),
        "goroutine" => goroutine(debug),
        "threadcreate" => threadcreate(debug),
        "symbol" => symbol(req),
        "profile" => {
            if !enabled().cpu {
                return error(
                    500,
                    "Could not enable CPU profiling: cpu is not in RPROF_PROFILES",
                );
            }
            let secs = seconds
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|&s| s > 0)
                .unwrap_or(30);
            if secs > MAX_SECONDS {
                return error(400, "profile duration exceeds server's WriteTimeout");
            }
            profile_file("profile", &cpu_window(secs))
        }
        "heap" | "allocs" | "block" | "mutex" => {
            if !kind_on(name) {
                return error(404, "Unknown profile");
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
                let before = cumulative(name);
                std::thread::sleep(Duration::from_secs(secs));
                let after = cumulative(name);
                return profile_file(
                    &format!("delta-{name}"),
                    &rprof_profile::subtract(after, &before),
                );
            }
            if debug > 0 {
                return text(legacy_text(name));
            }
            profile_file(name, &cumulative(name))
        }
        "delta_heap" | "delta_block" | "delta_mutex" => {
            let kind = &name["delta_".len()..];
            if !kind_on(kind) {
                return error(404, "Unknown profile");
            }
            // The previous answer on each path: the next one is the change since.
            static LAST: Lock<Option<HashMap<String, Profile>>> = Lock::new(None);
            let now = cumulative(kind);
            let mut last = LAST.lock();
            let map = last.get_or_insert_with(HashMap::new);
            let out = match map.get(kind) {
                Some(before) => rprof_profile::subtract(now.clone(), before),
                None => now.clone(),
            };
            map.insert(kind.to_string(), now);
            profile_file(name, &out)
        }
        _ => error(404, "Unknown profile"),
    }
}

/// The cumulative profile of a kind, as the files hold it (`allocs`: the heap profile with
/// alloc_space as its default sample type, as Go's).
fn cumulative(name: &str) -> Profile {
    let mut guard = symbolize::lock_shared();
    let s = symbolize::shared(&mut guard);
    match name {
        "heap" => crate::kinds::pprof::heap_profile(s, true),
        "allocs" => {
            let mut p = crate::kinds::pprof::heap_profile(s, true);
            if let Some(i) = p.string_table.iter().position(|x| x == "alloc_space") {
                p.default_sample_type = i as i64;
            }
            p
        }
        "block" => {
            let (block, _) = crate::kinds::contention::buckets();
            crate::kinds::pprof::contention_profile(&block, 1.0, s)
        }
        _ => {
            let (_, mutex) = crate::kinds::contention::buckets();
            let fraction = crate::kinds::contention::mutex_fraction() as f64;
            crate::kinds::pprof::contention_profile(&mutex, fraction, s)
        }
    }
}

/// The CPU profile of the next `secs` seconds: the difference of two snapshots of the
/// source, so that the files' windows (and other requests') are untouched.
fn cpu_window(secs: u64) -> Profile {
    let before = crate::kinds::cpu::snapshot();
    let start_unix = crate::kinds::pprof::unix_now_ns();
    let start = crate::signal_safe::sys::monotonic_ns();
    std::thread::sleep(Duration::from_secs(secs));
    let after = crate::kinds::cpu::snapshot();
    let duration = crate::signal_safe::sys::monotonic_ns().saturating_sub(start) as i64;
    let window = crate::kinds::cpu::window(&before, &after);
    let mut guard = symbolize::lock_shared();
    let s = symbolize::shared(&mut guard);
    crate::kinds::pprof::cpu_profile(
        &window,
        s,
        crate::kinds::cpu::period_ns(),
        start_unix,
        duration,
    )
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
    let enabled = enabled();
    let mut rows = String::new();
    let mut descriptions = String::new();
    let mut add = |name: &str, count: Option<usize>, on: bool, what: &str| {
        let href = if name == "profile" {
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
    };
    let heap = crate::kinds::heap::bucket_count();
    let (block, mutex) = crate::kinds::contention::bucket_counts();
    let threads = crate::runtime::threads::task_ids()
        .into_iter()
        .filter(|&t| !crate::runtime::own_threads::is_own(t))
        .count();
    let created: u64 = crate::kinds::threadcreate::creations()
        .iter()
        .map(|c| c.1)
        .sum();
    // As Go's index: name, count, and what each profile is.
    let profiles: [(&str, Option<usize>, bool, &str); 8] = [
        ("allocs", Some(heap), enabled.heap, "A sampling of all past memory allocations"),
        ("block", Some(block), enabled.block, "Stack traces that led to blocking on synchronization primitives"),
        ("cmdline", None, true, "The command line invocation of the current program"),
        ("goroutine", Some(threads), true, "Stack traces of all current threads (a native program's goroutines). Use debug=2 as a query parameter to export in the same format as an unrecovered panic."),
        ("heap", Some(heap), enabled.heap, "A sampling of memory allocations of live objects. You can specify the gc GET parameter to run GC before taking the heap sample."),
        ("mutex", Some(mutex), enabled.mutex, "Stack traces of holders of contended mutexes"),
        ("profile", None, enabled.cpu, "CPU profile. You can specify the duration in the seconds GET parameter. After you get the profile file, use the go tool pprof command to investigate the profile."),
        ("threadcreate", Some(created as usize), true, "Stack traces that led to the creation of new OS threads"),
    ];
    for (name, count, on, what) in profiles {
        add(name, count, on, what);
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

/// Counts of identical (stack, label) records, largest first, as Go's count profiles.
fn grouped<'a>(
    records: impl Iterator<Item = (&'a [u64], &'a str, u64)>,
) -> Vec<(Vec<u64>, String, u64)> {
    let mut counts: HashMap<(Vec<u64>, String), u64> = HashMap::new();
    for (stack, label, n) in records {
        *counts
            .entry((stack.to_vec(), label.to_string()))
            .or_insert(0) += n;
    }
    let mut out: Vec<_> = counts.into_iter().map(|((s, l), n)| (s, l, n)).collect();
    out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    out
}

/// A count profile (goroutine, threadcreate) in Go's proto shape, or its debug=1 text
/// (`<kind> profile: total N`, records `<n> @ 0x…`, `# labels:` and `#` frame lines).
fn count_profile(kind: &str, records: Vec<(Vec<u64>, String, u64)>, debug: i64) -> Response {
    let mut guard = symbolize::lock_shared();
    let s = symbolize::shared(&mut guard);
    if debug > 0 {
        let frames = s.resolve_all(records.iter().flat_map(|r| r.0.iter().copied()));
        let total: u64 = records.iter().map(|r| r.2).sum();
        let mut out = format!("{kind} profile: total {total}\n");
        for (stack, label, n) in &records {
            let _ = writeln!(
                out,
                "{n} @{}",
                crate::kinds::pprof::addresses(stack, &frames)
            );
            if !label.is_empty() {
                let _ = writeln!(out, "# labels: {{\"thread\":{}}}", json_string(label));
            }
            crate::kinds::pprof::frame_lines(&mut out, stack, &frames);
        }
        return text(out);
    }
    let p = crate::kinds::pprof::count_profile(kind, &records, s);
    profile_file(kind, &p)
}

fn goroutine(debug: i64) -> Response {
    let threads = crate::kinds::goroutine::capture();
    if debug >= 2 {
        return text(thread_dump_text(&threads));
    }
    let records = grouped(
        threads
            .iter()
            .map(|t| (t.stack.as_slice(), t.name.as_str(), 1)),
    );
    count_profile("goroutine", records, debug)
}

/// `goroutine?debug=2`: a block per thread, as Go's full goroutine dump: `goroutine <tid>
/// [<state>, thread "<name>"]:`, then per frame `function(...)` and `\t<file>:<line>
/// +<offset>`.
fn thread_dump_text(threads: &[crate::kinds::goroutine::ThreadInfo]) -> String {
    let mut guard = symbolize::lock_shared();
    let s = symbolize::shared(&mut guard);
    let frames = s.resolve_all(threads.iter().flat_map(|t| t.stack.iter().copied()));
    let mut out = String::new();
    for t in threads {
        let _ = writeln!(
            out,
            "goroutine {} [{}, thread {}]:",
            t.tid,
            t.state,
            json_string(&t.name)
        );
        for f in crate::kinds::pprof::text_frames(&t.stack, &frames) {
            let _ = match f.line {
                Some(l) => {
                    let file = if l.filename.is_empty() {
                        "?"
                    } else {
                        &l.filename
                    };
                    writeln!(
                        out,
                        "{}(...)\n\t{file}:{} +{:#x}",
                        l.function, l.line, f.offset
                    )
                }
                None => writeln!(out, "?(...)\n\t? pc={:#x}", f.address),
            };
        }
        if t.truncated {
            out.push_str("...additional frames elided...\n");
        }
        if let Some(why) = t.why {
            let _ = writeln!(out, "\t(no stack: {why})");
        }
        out.push('\n');
    }
    out
}

fn threadcreate(debug: i64) -> Response {
    let created = crate::kinds::threadcreate::creations();
    let records = grouped(created.iter().map(|(s, n)| (s.as_slice(), "", *n)));
    count_profile("threadcreate", records, debug)
}

/// Go's expvar page: `cmdline` and `memstats`.
fn vars() -> Response {
    let args: Vec<String> = cmdline().iter().map(|a| json_string(a)).collect();
    let mut stats = Vec::new();
    for (k, v) in crate::kinds::pprof::memstats(true) {
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

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's legacy text form (`debug=1`) of a cumulative profile.
fn legacy_text(name: &str) -> String {
    let mut guard = symbolize::lock_shared();
    let s = symbolize::shared(&mut guard);
    match name {
        "heap" | "allocs" => crate::kinds::pprof::heap_text(s),
        "block" => crate::kinds::pprof::contention_text(s, false),
        _ => crate::kinds::pprof::contention_text(s, true),
    }
}
