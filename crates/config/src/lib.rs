//! The only reader of `RPROF_*` variables: parsed once at load into a plain struct.
//! A bad value never stops the program: it yields one warning naming the variable, the
//! value and what is used instead.

use std::path::{Path, PathBuf};

mod push;
pub use push::{label_name_ok, parse_labels, parse_url, Protocol, Push, Secret};
pub use push::{DEFAULT_PUSH_PERIOD_S, MAX_PERIOD_S};

/// The profile kinds `RPROF_PROFILES` can name, and whether each is on when it is unset:
/// the library's table of kinds (`src/kinds/mod.rs`) in its order, for the `rprof`
/// command, which never loads the library, to refuse a bad name before it runs anything.
/// A test of the library fails when the two differ.
pub const KINDS: &[(&str, bool)] = &[
    ("cpu", true),
    ("heap", true),
    ("block", true),
    ("mutex", true),
    ("wall", false),
];

/// The profile kinds `RPROF_PROFILES` asks for, as written (lowercased). The names are
/// checked against a table of kinds by [`Profiles::select`] (the library's, or `KINDS`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Profiles {
    /// None: `RPROF_PROFILES` unset or empty, each kind's default.
    pub names: Option<Vec<String>>,
    /// The value as written, for the warning.
    pub written: String,
}

impl Profiles {
    /// Which of `known` (name, on by default) are on, in its order, and the warning line
    /// for names that are none of them. `all` turns every kind on.
    pub fn select(&self, known: &[(&str, bool)]) -> (Vec<bool>, Option<String>) {
        let Some(names) = &self.names else {
            return (known.iter().map(|k| k.1).collect(), None);
        };
        let mut on = vec![false; known.len()];
        let mut bad = Vec::new();
        for name in names {
            if name == "all" {
                on.iter_mut().for_each(|o| *o = true);
            } else if let Some(i) = known.iter().position(|k| k.0 == name) {
                on[i] = true;
            } else {
                bad.push(name.as_str());
            }
        }
        if bad.is_empty() {
            return (on, None);
        }
        let used: Vec<&str> = known
            .iter()
            .zip(&on)
            .filter(|(_, on)| **on)
            .map(|(k, _)| k.0)
            .collect();
        let all: Vec<&str> = known.iter().map(|k| k.0).collect();
        let warning = format!(
            "RPROF_PROFILES={:?} names unknown profile {} (known: {}); using {}",
            self.written,
            bad.join(","),
            all.join(", "),
            if used.is_empty() {
                "none".to_string()
            } else {
                used.join(",")
            }
        );
        (on, Some(warning))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off,
    Warn,
    Info,
    Debug,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Output path prefix, absolute (a relative `RPROF_OUT` is resolved at load).
    pub out_prefix: PathBuf,
    pub profiles: Profiles,
    pub cpu_hz: u32,
    /// Wall-clock samples of every thread a second (`RPROF_WALL_HZ`), for the wall kind.
    pub wall_hz: u32,
    /// `RPROF_WALL_HZ` was not given: the rate is lowered as needed to keep the wall
    /// sampler under 1 % of a core.
    pub wall_hz_default: bool,
    /// Mean bytes between heap samples; 1 records every allocation, 0 turns heap off.
    pub heap_rate: u64,
    /// Go's SetBlockProfileRate in ns: waits this long are always kept, shorter ones sampled.
    pub block_rate: u64,
    /// Go's SetMutexProfileFraction: about 1 in this many contention events is kept.
    pub mutex_fraction: u64,
    /// The snapshot signal; None when `RPROF_SIGNAL=none`.
    pub dump_signal: Option<i32>,
    /// The signal CPU timers deliver first (`RPROF_CPU_SIGNAL`); they move to a free
    /// real-time signal when the program takes this one.
    pub cpu_signal: i32,
    pub log: LogLevel,
    /// Where to serve profiles over HTTP (`RPROF_HTTP`); None: no server.
    pub http: Option<HttpAddr>,
    /// `RPROF_HTTP` as given, when it holds `%p`: each process, fork children included,
    /// serves on its own address (the pattern with its own pid).
    pub http_per_process: Option<String>,
    /// Glob patterns of the programs to profile (`RPROF_PROGRAMS`); empty: every program.
    pub programs: Vec<String>,
    /// A file each process appends one line to when it ends (`RPROF_RUN_LEDGER`, set by
    /// `rprof run` to learn which processes recorded what).
    pub ledger: Option<PathBuf>,
    /// Where profiles are pushed (`RPROF_PUSH` and the `RPROF_PUSH_*` variables).
    pub push: Option<Push>,
    /// `service_name` of pushed profiles (`RPROF_SERVICE_NAME`); None: the program's name.
    pub service_name: Option<String>,
    /// Labels added to pushed profiles (`RPROF_LABELS=k=v,…`).
    pub labels: Vec<(String, String)>,
    /// Write each kind's window every this many seconds as numbered files (`RPROF_PERIOD`).
    pub period_s: Option<u32>,
    /// How many numbered files of each kind are kept (`RPROF_KEEP`); None: all.
    pub keep: Option<u32>,
}

/// An address for the profile server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpAddr {
    /// host:port, the host an IP address.
    Tcp(std::net::SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// `RPROF_PUSH` as it may be shown: any `user:password@` replaced by `***@`.
pub fn hide_credentials(v: &str) -> String {
    match (v.find("://"), v.find('@')) {
        (Some(s), Some(at)) if at > s && !v[s + 3..at].contains('/') => {
            format!("{}***{}", &v[..s + 3], &v[at..])
        }
        _ => v.to_owned(),
    }
}

/// Parses `RPROF_HTTP` (`%p` already replaced): `127.0.0.1:6060`, `localhost:6060`,
/// `:6060` (loopback), `0.0.0.0:6060`, `[::1]:6060`, port 0 for any free port, or
/// `unix:/path`.
pub fn parse_http(v: &str) -> Option<HttpAddr> {
    let v = v.trim();
    if let Some(path) = v.strip_prefix("unix:") {
        return (!path.is_empty()).then(|| HttpAddr::Unix(PathBuf::from(path)));
    }
    let (host, port) = v.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ip: std::net::IpAddr = match host {
        "" | "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?,
    };
    Some(HttpAddr::Tcp(std::net::SocketAddr::new(ip, port)))
}

pub const DEFAULT_CPU_HZ: u32 = 100;
pub const DEFAULT_WALL_HZ: u32 = 20;
pub const MAX_WALL_HZ: u32 = 1000;
pub const MAX_CPU_HZ: u32 = 10_000;
pub const DEFAULT_HEAP_RATE: u64 = 512 * 1024;
pub const DEFAULT_BLOCK_RATE: u64 = 10_000;
pub const DEFAULT_MUTEX_FRACTION: u64 = 10;

impl Config {
    /// Parses the variables found by `get`, resolving a relative prefix against `cwd`.
    /// Returns the configuration and one warning line (without the `rprof:` prefix) per bad value.
    ///
    /// Every variable is read alike: surrounding blanks are ignored, an empty value means
    /// the default (no warning), and names inside values (profiles, signals, log levels)
    /// are case-insensitive.
    pub fn parse(get: impl Fn(&str) -> Option<String>, cwd: &Path) -> (Config, Vec<String>) {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut warnings = Vec::new();
        let mut warn = |var: &str, val: &str, why: &str, used: &str| {
            warnings.push(format!("{var}={val:?} {why}; using {used}"));
        };

        let prefix = get("RPROF_OUT").unwrap_or_else(|| "rprof".to_owned());
        let out_prefix = cwd.join(prefix);

        let profiles = Profiles {
            written: get("RPROF_PROFILES").unwrap_or_default(),
            names: get("RPROF_PROFILES").map(|v| {
                v.split(',')
                    .map(|n| n.trim().to_ascii_lowercase())
                    .filter(|n| !n.is_empty())
                    .collect()
            }),
        };

        let cpu_hz = match get("RPROF_CPU_HZ") {
            None => DEFAULT_CPU_HZ,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(hz) if (1..=MAX_CPU_HZ).contains(&hz) => hz,
                _ => {
                    warn(
                        "RPROF_CPU_HZ",
                        &v,
                        &format!("is not a whole number from 1 to {MAX_CPU_HZ}"),
                        &DEFAULT_CPU_HZ.to_string(),
                    );
                    DEFAULT_CPU_HZ
                }
            },
        };

        let wall_hz_default = get("RPROF_WALL_HZ").is_none();
        let wall_hz = match get("RPROF_WALL_HZ") {
            None => DEFAULT_WALL_HZ,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(hz) if (1..=MAX_WALL_HZ).contains(&hz) => hz,
                _ => {
                    warn(
                        "RPROF_WALL_HZ",
                        &v,
                        &format!("is not a whole number from 1 to {MAX_WALL_HZ}"),
                        &DEFAULT_WALL_HZ.to_string(),
                    );
                    DEFAULT_WALL_HZ
                }
            },
        };

        let heap_rate = match get("RPROF_HEAP_RATE") {
            None => DEFAULT_HEAP_RATE,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(r) if r <= 1 << 40 => r,
                _ => {
                    warn(
                        "RPROF_HEAP_RATE",
                        &v,
                        "is not a whole number of bytes from 0 to 2^40",
                        &DEFAULT_HEAP_RATE.to_string(),
                    );
                    DEFAULT_HEAP_RATE
                }
            },
        };

        let mut number = |var: &str, default: u64, max: u64, what: &str| match get(var) {
            None => default,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n <= max => n,
                _ => {
                    warn(var, &v, &format!("is not {what}"), &default.to_string());
                    default
                }
            },
        };
        let block_rate = number(
            "RPROF_BLOCK_RATE",
            DEFAULT_BLOCK_RATE,
            u64::MAX / 2,
            "a whole number of nanoseconds",
        );
        let mutex_fraction = number(
            "RPROF_MUTEX_FRACTION",
            DEFAULT_MUTEX_FRACTION,
            1 << 30,
            "a whole number from 0 to 2^30",
        );

        let dump_signal = match get("RPROF_SIGNAL") {
            None => Some(libc::SIGUSR2),
            Some(v) => match parse_signal(&v) {
                Ok(s) => s,
                Err(()) => {
                    warn(
                        "RPROF_SIGNAL",
                        &v,
                        "is not a signal name or number usable for dumps",
                        "USR2",
                    );
                    Some(libc::SIGUSR2)
                }
            },
        };

        let log_value = get("RPROF_LOG");
        let log = match log_value.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("warn") => LogLevel::Warn,
            Some("off") => LogLevel::Off,
            Some("info") => LogLevel::Info,
            Some("debug") => LogLevel::Debug,
            Some(_) => {
                let v = log_value.as_deref().unwrap_or_default();
                warn(
                    "RPROF_LOG",
                    v,
                    "is not one of off, warn, info, debug",
                    "warn",
                );
                LogLevel::Warn
            }
        };

        let cpu_signal = match get("RPROF_CPU_SIGNAL") {
            None => libc::SIGPROF,
            Some(v) => match parse_signal_name(&v).filter(|&s| usable_cpu_signal(s, dump_signal)) {
                Some(s) => s,
                None => {
                    warn(
                        "RPROF_CPU_SIGNAL",
                        &v,
                        "is not PROF or a real-time signal (RTMIN+n, RTMAX-n) other than the dump signal",
                        "PROF",
                    );
                    libc::SIGPROF
                }
            },
        };

        let http = match get("RPROF_HTTP") {
            None => None,
            Some(v) => {
                let expanded = v.replace("%p", &std::process::id().to_string());
                let a = parse_http(&expanded);
                if a.is_none() {
                    warn(
                        "RPROF_HTTP",
                        &v,
                        "is not host:port, :port or unix:/path",
                        "no profile server",
                    );
                }
                a
            }
        };

        let programs = match get("RPROF_PROGRAMS") {
            None => Vec::new(),
            Some(v) => {
                let list: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = list.iter().find(|p| !glob_valid(p)) {
                    warn(
                        "RPROF_PROGRAMS",
                        &v,
                        &format!("has a malformed pattern {bad:?} (an unclosed `[`)"),
                        "every program",
                    );
                    Vec::new()
                } else {
                    list
                }
            }
        };
        let ledger = get("RPROF_RUN_LEDGER").map(|v| cwd.join(v));

        let mut seconds = |var: &str, default: &str| match get(var) {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=MAX_PERIOD_S).contains(&n) => Some(n),
                _ => {
                    warn(
                        var,
                        &v,
                        &format!("is not a whole number of seconds from 1 to {MAX_PERIOD_S}"),
                        default,
                    );
                    None
                }
            },
        };
        let push_period = seconds("RPROF_PUSH_PERIOD", &DEFAULT_PUSH_PERIOD_S.to_string());
        let period_s = seconds("RPROF_PERIOD", "no periodic files");
        let keep = match get("RPROF_KEEP") {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    warn(
                        "RPROF_KEEP",
                        &v,
                        "is not a whole number from 1",
                        "every file kept",
                    );
                    None
                }
            },
        };
        let protocol = match get("RPROF_PUSH_PROTOCOL").map(|v| v.to_ascii_lowercase()) {
            None => None,
            Some(v) if v == "pyroscope" => Some(Protocol::Pyroscope),
            Some(v) if v == "otlp" => Some(Protocol::Otlp),
            Some(v) => {
                warn(
                    "RPROF_PUSH_PROTOCOL",
                    &v,
                    "is not pyroscope or otlp",
                    "the URL's (pyroscope unless it starts otlp+)",
                );
                None
            }
        };
        let mut push = match get("RPROF_PUSH") {
            None => None,
            Some(v) => match parse_url(&v, protocol) {
                Ok(mut p) => {
                    p.period_s = push_period.unwrap_or(DEFAULT_PUSH_PERIOD_S);
                    p.token = get("RPROF_PUSH_TOKEN").map(Secret);
                    p.tenant = get("RPROF_PUSH_TENANT");
                    Some(p)
                }
                Err(why) => {
                    // The value may hold a password: it is shown without its credentials.
                    warn("RPROF_PUSH", &hide_credentials(&v), why, "no push");
                    None
                }
            },
        };
        if let Some(t) = get("RPROF_PUSH_TENANT") {
            if !t.chars().all(|c| c.is_ascii_graphic()) {
                warn(
                    "RPROF_PUSH_TENANT",
                    &t,
                    "is not printable ASCII",
                    "no tenant",
                );
                if let Some(p) = push.as_mut() {
                    p.tenant = None;
                }
            }
        }
        let labels = match get("RPROF_LABELS") {
            None => Vec::new(),
            Some(v) => {
                let (good, bad) = parse_labels(&v);
                if !bad.is_empty() {
                    let kept: Vec<String> = good.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    warn(
                        "RPROF_LABELS",
                        &v,
                        &format!(
                            "has malformed items {} (each k=v, k a label name [A-Za-z_][A-Za-z0-9_]* not starting __, once)",
                            bad.join(",")
                        ),
                        &if kept.is_empty() { "no labels".to_owned() } else { kept.join(",") },
                    );
                }
                good
            }
        };
        let service_name = match get("RPROF_SERVICE_NAME") {
            Some(v) if v.chars().any(char::is_control) => {
                warn(
                    "RPROF_SERVICE_NAME",
                    &v,
                    "holds a control character",
                    "the program's name",
                );
                None
            }
            v => v,
        };

        (
            Config {
                out_prefix,
                profiles,
                cpu_hz,
                wall_hz,
                wall_hz_default,
                heap_rate,
                block_rate,
                mutex_fraction,
                dump_signal,
                cpu_signal,
                log,
                http_per_process: get("RPROF_HTTP").filter(|v| v.contains("%p") && http.is_some()),
                http,
                programs,
                ledger,
                push,
                service_name,
                labels,
                period_s,
                keep,
            },
            warnings,
        )
    }
}

impl Config {
    /// Whether a process with these names (see `program_names`) is to be profiled.
    pub fn wants(&self, names: &[String]) -> bool {
        self.programs.is_empty()
            || self
                .programs
                .iter()
                .any(|p| names.iter().any(|n| glob_match(p, n)))
    }
}

/// Interpreters whose script names the program (`python3 work.py`, `bash build.sh`): an
/// executable whose name starts with one of these, then optional digits, dots and `m`.
const INTERPRETERS: &[&str] = &[
    "python", "pypy", "perl", "ruby", "node", "bash", "sh", "dash", "zsh", "ksh", "php", "lua",
    "tclsh", "Rscript",
];

fn is_interpreter(exe: &str) -> bool {
    INTERPRETERS.iter().any(|i| {
        exe.strip_prefix(i).is_some_and(|rest| {
            rest.bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'm')
        })
    })
}

/// The names `RPROF_PROGRAMS` patterns are matched against: the executable's file name
/// (`exe`, from /proc/self/exe), and for an interpreter the file name of its script:
/// the first argument after `argv[0]` that is not an option (`-m module` gives the
/// module; `-c`/`-e` code gives no script; the values of `-X` and `-W` are skipped).
pub fn program_names(exe: &str, argv: &[String]) -> Vec<String> {
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
    let exe = base(exe);
    let mut names = vec![exe.clone()];
    if !is_interpreter(&exe) {
        return names;
    }
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "-e" | "-E" => break,
            "--" => {
                if let Some(script) = it.next() {
                    names.push(base(script));
                }
                break;
            }
            "-m" => {
                if let Some(module) = it.next() {
                    names.push(module.clone());
                }
                break;
            }
            "-X" | "-W" => {
                it.next();
            }
            _ if a.starts_with('-') => {}
            _ => {
                names.push(base(a));
                break;
            }
        }
    }
    names
}

/// A shell glob: `*` any run of characters, `?` one, `[abc]`, `[a-z]`, `[!x]` one of (or
/// not of) a set; anything else stands for itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point for the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match class(&p, pi + 1, n[ni]) {
                Some((true, next)) => Some(next),
                _ => None,
            },
            Some(&c) if c == n[ni] => Some(pi + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[at]` (after its `[`): (matched, index
/// after the closing `]`), or None when the class is not closed.
fn class(p: &[char], at: usize, c: char) -> Option<(bool, usize)> {
    let mut i = at;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let &x = p.get(i)?;
        if x == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            hit |= (x..=p[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= x == c;
            i += 1;
        }
    }
}

/// Every `[` of the pattern starts a closed class.
fn glob_valid(pattern: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < p.len() {
        if p[i] == '[' {
            match class(&p, i + 1, '\0') {
                Some((_, next)) => i = next,
                None => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// Signals that cannot serve as the dump signal: uncatchable ones, those the library uses
/// itself, and the synchronous faults whose default action matters.
fn usable_dump_signal(sig: i32) -> bool {
    let reserved = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGPROF,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGINT,
        libc::SIGTERM,
    ];
    (1..=libc::SIGRTMAX()).contains(&sig) && !reserved.contains(&sig)
}

/// The CPU timers' signal: SIGPROF or a real-time signal, not the dump signal.
fn usable_cpu_signal(sig: i32, dump: Option<i32>) -> bool {
    (sig == libc::SIGPROF || (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig))
        && Some(sig) != dump
}

/// `USR1`, `SIGUSR1`, `10`, `RTMIN+3` or `none`.
fn parse_signal(v: &str) -> Result<Option<i32>, ()> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    match parse_signal_name(v) {
        Some(sig) if usable_dump_signal(sig) => Ok(Some(sig)),
        _ => Err(()),
    }
}

/// A signal by name (`USR1`, `SIGUSR1`, any case), number, `RTMIN+n` or `RTMAX-n`.
pub fn parse_signal_name(v: &str) -> Option<i32> {
    let upper = v.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let sig = if let Ok(n) = name.parse::<i32>() {
        n
    } else if let Some(k) = name.strip_prefix("RTMIN+") {
        libc::SIGRTMIN() + k.parse::<i32>().ok()?
    } else if let Some(k) = name.strip_prefix("RTMAX-") {
        libc::SIGRTMAX() - k.parse::<i32>().ok()?
    } else {
        match name {
            "HUP" => libc::SIGHUP,
            "QUIT" => libc::SIGQUIT,
            "USR1" => libc::SIGUSR1,
            "USR2" => libc::SIGUSR2,
            "ALRM" => libc::SIGALRM,
            "URG" => libc::SIGURG,
            "WINCH" => libc::SIGWINCH,
            "TTIN" => libc::SIGTTIN,
            "TTOU" => libc::SIGTTOU,
            "XCPU" => libc::SIGXCPU,
            "XFSZ" => libc::SIGXFSZ,
            "VTALRM" => libc::SIGVTALRM,
            "PWR" => libc::SIGPWR,
            "PROF" => libc::SIGPROF,
            "INT" => libc::SIGINT,
            "TERM" => libc::SIGTERM,
            "KILL" => libc::SIGKILL,
            "RTMIN" => libc::SIGRTMIN(),
            "RTMAX" => libc::SIGRTMAX(),
            _ => return None,
        }
    };
    (1..=libc::SIGRTMAX()).contains(&sig).then_some(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> (Config, Vec<String>) {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(
            |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            Path::new("/work/dir"),
        )
    }

    #[test]
    fn defaults() {
        let (c, w) = parse(&[]);
        assert!(w.is_empty());
        assert_eq!(c.out_prefix, Path::new("/work/dir/rprof"));
        assert_eq!(c.profiles, Profiles::default());
        assert_eq!(c.cpu_hz, 100);
        assert_eq!(c.heap_rate, 524_288);
        assert_eq!((c.block_rate, c.mutex_fraction), (10_000, 10));
        assert_eq!(c.dump_signal, Some(libc::SIGUSR2));
        assert_eq!(c.log, LogLevel::Warn);
    }

    #[test]
    fn push_variables() {
        let (c, w) = parse(&[
            ("RPROF_PUSH", "http://alice:s3cret@127.0.0.1:4040"),
            ("RPROF_PUSH_PERIOD", "1"),
            ("RPROF_PUSH_TOKEN", "tok"),
            ("RPROF_PUSH_TENANT", "team-a"),
            ("RPROF_LABELS", "env=prod,region=eu"),
            ("RPROF_SERVICE_NAME", "api"),
            ("RPROF_PERIOD", "10"),
            ("RPROF_KEEP", "3"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        let p = c.push.clone().unwrap();
        assert_eq!(p.period_s, 1);
        assert_eq!(p.token, Some(Secret("tok".into())));
        assert_eq!(p.tenant.as_deref(), Some("team-a"));
        assert_eq!(p.basic.as_ref().unwrap().0, "alice");
        assert!(!format!("{c:?}").contains("s3cret") && !format!("{c:?}").contains("tok\""));
        assert_eq!(c.labels.len(), 2);
        assert_eq!(c.service_name.as_deref(), Some("api"));
        assert_eq!((c.period_s, c.keep), (Some(10), Some(3)));
        assert_eq!(
            parse(&[("RPROF_PUSH", "h:1"), ("RPROF_PUSH_PROTOCOL", "otlp")])
                .0
                .push,
            None
        );
        let (c, w) = parse(&[("RPROF_PUSH", "http://bob:pw@h:1/x?y")]);
        assert_eq!(c.push, None);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("RPROF_PUSH=\"http://***@h:1/x?y\""),
            "{w:?}"
        );
        assert!(w[0].ends_with("using no push"), "{w:?}");
        let (c, w) = parse(&[
            ("RPROF_PUSH", "http://h:1"),
            ("RPROF_PUSH_PROTOCOL", "grpc"),
        ]);
        assert_eq!(c.push.unwrap().protocol, Protocol::Pyroscope);
        assert!(w[0].starts_with("RPROF_PUSH_PROTOCOL=\"grpc\""), "{w:?}");
        let (c, w) = parse(&[("RPROF_LABELS", "a=1,b")]);
        assert_eq!(c.labels, vec![("a".to_owned(), "1".to_owned())]);
        assert!(
            w[0].starts_with("RPROF_LABELS=") && w[0].ends_with("using a=1"),
            "{w:?}"
        );
        for (var, bad) in [
            ("RPROF_PUSH_PERIOD", "0"),
            ("RPROF_PERIOD", "x"),
            ("RPROF_KEEP", "0"),
        ] {
            let (c, w) = parse(&[(var, bad)]);
            assert_eq!(w.len(), 1, "{var}={bad}");
            assert!(w[0].starts_with(var), "{w:?}");
            assert_eq!((c.period_s, c.keep), (None, None));
        }
    }

    #[test]
    fn relative_and_absolute_prefixes() {
        assert_eq!(
            parse(&[("RPROF_OUT", "out/p")]).0.out_prefix,
            Path::new("/work/dir/out/p")
        );
        assert_eq!(
            parse(&[("RPROF_OUT", "/tmp/p")]).0.out_prefix,
            Path::new("/tmp/p")
        );
    }

    #[test]
    fn bad_hz_warns_and_uses_default() {
        for bad in ["abc", "0", "-5", "100000"] {
            let (c, w) = parse(&[("RPROF_CPU_HZ", bad)]);
            assert_eq!(c.cpu_hz, 100, "{bad}");
            assert_eq!(w.len(), 1, "{bad}");
            assert!(w[0].starts_with("RPROF_CPU_HZ="), "{}", w[0]);
            assert!(w[0].ends_with("using 100"), "{}", w[0]);
        }
        assert_eq!(parse(&[("RPROF_CPU_HZ", "1000")]).0.cpu_hz, 1000);
        for bad in ["x", "0", "1001"] {
            let (c, w) = parse(&[("RPROF_WALL_HZ", bad)]);
            assert_eq!(c.wall_hz, DEFAULT_WALL_HZ, "{bad}");
            assert_eq!(w.len(), 1, "{bad}");
            assert!(w[0].starts_with("RPROF_WALL_HZ="), "{}", w[0]);
        }
        assert_eq!(parse(&[("RPROF_WALL_HZ", "50")]).0.wall_hz, 50);
    }

    #[test]
    fn heap_rate() {
        assert_eq!(parse(&[("RPROF_HEAP_RATE", "1")]).0.heap_rate, 1);
        assert_eq!(parse(&[("RPROF_HEAP_RATE", "0")]).0.heap_rate, 0);
        let (c, w) = parse(&[("RPROF_HEAP_RATE", "-3")]);
        assert_eq!(c.heap_rate, 524_288);
        assert!(
            w[0].starts_with("RPROF_HEAP_RATE=\"-3\"") && w[0].ends_with("using 524288"),
            "{w:?}"
        );
    }

    #[test]
    fn block_and_mutex_rates() {
        let (c, w) = parse(&[("RPROF_BLOCK_RATE", "1"), ("RPROF_MUTEX_FRACTION", "1")]);
        assert!(w.is_empty());
        assert_eq!((c.block_rate, c.mutex_fraction), (1, 1));
        let (c, w) = parse(&[("RPROF_BLOCK_RATE", "soon"), ("RPROF_MUTEX_FRACTION", "-1")]);
        assert_eq!((c.block_rate, c.mutex_fraction), (10_000, 10));
        assert_eq!(w.len(), 2, "{w:?}");
    }

    #[test]
    fn profiles_list() {
        let known = [
            ("cpu", true),
            ("heap", true),
            ("mutex", true),
            ("wall", false),
        ];
        let (c, w) = parse(&[("RPROF_PROFILES", "cpu, mutex")]);
        assert!(w.is_empty());
        assert_eq!(
            c.profiles.select(&known),
            (vec![true, false, true, false], None)
        );
        let (c, _) = parse(&[("RPROF_PROFILES", "cpu,bogus")]);
        let (on, w) = c.profiles.select(&known);
        assert_eq!(on, [true, false, false, false]);
        let w = w.unwrap();
        assert!(
            w.starts_with("RPROF_PROFILES=") && w.contains("bogus") && w.ends_with("using cpu"),
            "{w}"
        );
        let (c, _) = parse(&[]);
        assert_eq!(c.profiles.select(&known).0, [true, true, true, false]);
        let (c, _) = parse(&[("RPROF_PROFILES", "all")]);
        assert_eq!(c.profiles.select(&known).0, [true; 4]);
    }

    #[test]
    fn signals() {
        let sig = |v| parse(&[("RPROF_SIGNAL", v)]);
        assert_eq!(sig("USR1").0.dump_signal, Some(libc::SIGUSR1));
        assert_eq!(sig("SIGUSR1").0.dump_signal, Some(libc::SIGUSR1));
        assert_eq!(sig("sigusr1").0.dump_signal, Some(libc::SIGUSR1));
        assert_eq!(sig("12").0.dump_signal, Some(12));
        assert_eq!(sig("none").0.dump_signal, None);
        assert_eq!(sig("RTMIN+2").0.dump_signal, Some(libc::SIGRTMIN() + 2));
        for bad in ["KILL", "PROF", "9", "bogus", "0", "999"] {
            let (c, w) = sig(bad);
            assert_eq!(c.dump_signal, Some(libc::SIGUSR2), "{bad}");
            assert_eq!(w.len(), 1, "{bad}");
            assert!(w[0].starts_with("RPROF_SIGNAL="), "{}", w[0]);
        }
    }

    #[test]
    fn http_addresses() {
        let tcp = |s: &str| Some(HttpAddr::Tcp(s.parse().unwrap()));
        assert_eq!(parse_http("127.0.0.1:6060"), tcp("127.0.0.1:6060"));
        assert_eq!(parse_http("localhost:6060"), tcp("127.0.0.1:6060"));
        assert_eq!(parse_http(":6060"), tcp("127.0.0.1:6060"));
        assert_eq!(parse_http("0.0.0.0:0"), tcp("0.0.0.0:0"));
        assert_eq!(parse_http("[::1]:80"), tcp("[::1]:80"));
        assert_eq!(
            parse_http("unix:/tmp/x.sock"),
            Some(HttpAddr::Unix("/tmp/x.sock".into()))
        );
        for bad in ["6060", "host:", "example.com:80", ":99999", "unix:"] {
            assert_eq!(parse_http(bad), None, "{bad}");
        }
        let (c, w) = parse(&[("RPROF_HTTP", "unix:/tmp/r.%p.sock")]);
        let want = format!("/tmp/r.{}.sock", std::process::id());
        assert_eq!(c.http, Some(HttpAddr::Unix(want.into())));
        assert_eq!(c.http_per_process.as_deref(), Some("unix:/tmp/r.%p.sock"));
        assert!(w.is_empty());
        let (c, _) = parse(&[("RPROF_HTTP", "127.0.0.1:6060")]);
        assert_eq!(c.http_per_process, None);
        let (c, w) = parse(&[("RPROF_HTTP", "nowhere")]);
        assert_eq!(c.http, None);
        assert_eq!(c.http_per_process, None);
        assert!(w[0].starts_with("RPROF_HTTP=\"nowhere\""), "{w:?}");
    }

    /// Every variable alike: an empty (or blank) value is the default, without a warning;
    /// names inside values are case-insensitive.
    #[test]
    fn empty_means_default_and_names_ignore_case() {
        let defaults = parse(&[]).0;
        for var in [
            "RPROF_OUT",
            "RPROF_PROFILES",
            "RPROF_CPU_HZ",
            "RPROF_HEAP_RATE",
            "RPROF_BLOCK_RATE",
            "RPROF_MUTEX_FRACTION",
            "RPROF_SIGNAL",
            "RPROF_CPU_SIGNAL",
            "RPROF_LOG",
            "RPROF_HTTP",
            "RPROF_PROGRAMS",
            "RPROF_RUN_LEDGER",
            "RPROF_PUSH",
            "RPROF_PUSH_PROTOCOL",
            "RPROF_PUSH_PERIOD",
            "RPROF_SERVICE_NAME",
            "RPROF_LABELS",
            "RPROF_PERIOD",
            "RPROF_KEEP",
        ] {
            for empty in ["", "  "] {
                let (c, w) = parse(&[(var, empty)]);
                assert!(w.is_empty(), "{var}={empty:?}: {w:?}");
                assert_eq!(c, defaults, "{var}={empty:?}");
            }
        }
        assert_eq!(parse(&[("RPROF_LOG", "DEBUG")]).0.log, LogLevel::Debug);
        assert_eq!(parse(&[("RPROF_LOG", " Info ")]).0.log, LogLevel::Info);
        let (c, w) = parse(&[("RPROF_PROFILES", "CPU,Heap")]);
        assert!(w.is_empty(), "{w:?}");
        let known = [("cpu", true), ("heap", true), ("block", true)];
        assert_eq!(c.profiles.select(&known).0, [true, true, false]);
        assert_eq!(parse(&[("RPROF_SIGNAL", "usr1")]).0.dump_signal, Some(10));
    }

    #[test]
    fn cpu_signals() {
        let sig = |v| parse(&[("RPROF_CPU_SIGNAL", v)]);
        assert_eq!(parse(&[]).0.cpu_signal, libc::SIGPROF);
        assert_eq!(sig("prof").0.cpu_signal, libc::SIGPROF);
        assert_eq!(sig("RTMIN+3").0.cpu_signal, libc::SIGRTMIN() + 3);
        assert_eq!(sig("rtmax-1").0.cpu_signal, libc::SIGRTMAX() - 1);
        assert_eq!(sig("SIGRTMAX").0.cpu_signal, libc::SIGRTMAX());
        for bad in ["USR2", "TERM", "9", "bogus", "RTMAX-99"] {
            let (c, w) = sig(bad);
            assert_eq!(c.cpu_signal, libc::SIGPROF, "{bad}");
            assert_eq!(w.len(), 1, "{bad}");
            assert!(
                w[0].starts_with("RPROF_CPU_SIGNAL=") && w[0].ends_with("using PROF"),
                "{}",
                w[0]
            );
        }
        // The dump signal cannot also be the CPU signal.
        let (c, w) = parse(&[("RPROF_SIGNAL", "RTMIN+1"), ("RPROF_CPU_SIGNAL", "RTMIN+1")]);
        assert_eq!((c.cpu_signal, w.len()), (libc::SIGPROF, 1));
    }

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("python3*", "python3.11", true),
            ("python3*", "python", false),
            ("*.py", "work.py", true),
            ("*.py", "work.pyc", false),
            ("w?rk", "work", true),
            ("[pw]ork", "work", true),
            ("[!w]ork", "work", false),
            ("[a-c]x", "bx", true),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxx", false),
            ("", "", true),
            ("sort", "sort", true),
        ] {
            assert_eq!(glob_match(p, n), want, "{p} {n}");
        }
        let (c, w) = parse(&[("RPROF_PROGRAMS", " work.py , sort ")]);
        assert!(w.is_empty());
        assert_eq!(c.programs, ["work.py", "sort"]);
        let (c, w) = parse(&[("RPROF_PROGRAMS", "ab[c")]);
        assert!(c.programs.is_empty() && w.len() == 1, "{w:?}");
        assert!(
            w[0].starts_with("RPROF_PROGRAMS=\"ab[c\"") && w[0].ends_with("using every program")
        );
    }

    #[test]
    fn program_names_of_interpreters_include_the_script() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let names = |exe: &str, a: &[&str]| program_names(exe, &v(a));
        assert_eq!(names("/usr/bin/sed", &["sed", "-e", "x", "f.py"]), ["sed"]);
        assert_eq!(
            names(
                "/usr/bin/python3.11",
                &["python3", "-u", "/tmp/work.py", "a"]
            ),
            ["python3.11", "work.py"]
        );
        assert_eq!(
            names("/usr/bin/python3.11", &["python3", "-X", "dev", "work.py"]),
            ["python3.11", "work.py"]
        );
        assert_eq!(
            names("/usr/bin/python3.11", &["python3", "-m", "http.server"]),
            ["python3.11", "http.server"]
        );
        assert_eq!(
            names("/usr/bin/python3.11", &["python3", "-c", "x.py"]),
            ["python3.11"]
        );
        assert_eq!(
            names("/usr/bin/bash", &["bash", "build.sh"]),
            ["bash", "build.sh"]
        );
        assert_eq!(
            names("/usr/bin/perl", &["perl", "-w", "t.pl"]),
            ["perl", "t.pl"]
        );
        assert_eq!(names("/usr/bin/shred", &["shred", "x"]), ["shred"]);
        let c = parse(&[("RPROF_PROGRAMS", "work.py")]).0;
        assert!(c.wants(&names("/usr/bin/python3.11", &["python3", "work.py"])));
        assert!(!c.wants(&names("/usr/bin/sed", &["sed", "work.py"])));
        assert!(parse(&[]).0.wants(&names("/usr/bin/sed", &["sed"])));
    }

    #[test]
    fn log_levels() {
        assert_eq!(parse(&[("RPROF_LOG", "debug")]).0.log, LogLevel::Debug);
        assert_eq!(parse(&[("RPROF_LOG", "off")]).0.log, LogLevel::Off);
        let (c, w) = parse(&[("RPROF_LOG", "loud")]);
        assert_eq!(c.log, LogLevel::Warn);
        assert_eq!(w.len(), 1);
    }
}
