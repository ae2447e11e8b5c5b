//! The variables of pushing profiles to a backend and of continuous files: `RPROF_PUSH`,
//! `RPROF_PUSH_PROTOCOL`, `RPROF_PUSH_PERIOD`, `RPROF_PUSH_TOKEN`, `RPROF_PUSH_TENANT`,
//! `RPROF_SERVICE_NAME`, `RPROF_LABELS`, `RPROF_PERIOD` and `RPROF_KEEP`.

/// Which API a push speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Grafana Pyroscope's Push API: `POST /push.v1.PusherService/Push`, Connect unary,
    /// a gzip-encoded `push.v1.PushRequest` holding one raw pprof per series.
    Pyroscope,
    /// OpenTelemetry's profiles signal over OTLP/HTTP: `POST /v1development/profiles`,
    /// an `ExportProfilesServiceRequest` in binary protobuf.
    Otlp,
}

impl Protocol {
    /// The path the API's endpoint has below the URL given.
    pub fn path(self) -> &'static str {
        match self {
            Protocol::Pyroscope => "/push.v1.PusherService/Push",
            Protocol::Otlp => "/v1development/profiles",
        }
    }
}

/// A secret (a token, a password): compared, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Where and how profiles are pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    pub protocol: Protocol,
    /// The endpoint: scheme, host, port and the API's path, without the credentials.
    pub endpoint: String,
    /// The scheme is https (TLS needed).
    pub https: bool,
    /// Basic authentication from the URL's `user:password@`.
    pub basic: Option<(String, Secret)>,
    /// `RPROF_PUSH_TOKEN`: sent as `Authorization: Bearer …`.
    pub token: Option<Secret>,
    /// `RPROF_PUSH_TENANT`: sent as `X-Scope-OrgID` (multi-tenant Pyroscope, Grafana Cloud).
    pub tenant: Option<String>,
    /// Seconds between pushes (`RPROF_PUSH_PERIOD`).
    pub period_s: u32,
}

pub const DEFAULT_PUSH_PERIOD_S: u32 = 15;
pub const MAX_PERIOD_S: u32 = 86_400;

/// Parses `RPROF_PUSH`: `[pyroscope+|otlp+]http[s]://[user:password@]host[:port][/path]`.
/// The protocol is the scheme's prefix, else `protocol` (`RPROF_PUSH_PROTOCOL`), else
/// Pyroscope. The API's path is appended unless the URL already ends with it.
pub fn parse_url(v: &str, protocol: Option<Protocol>) -> Result<Push, &'static str> {
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("holds a blank or a control character");
    }
    let (scheme, rest) = v.split_once("://").ok_or("is not a URL (no ://)")?;
    let (named, scheme) = match scheme.to_ascii_lowercase().split_once('+') {
        Some(("pyroscope", s)) => (Some(Protocol::Pyroscope), s.to_owned()),
        Some(("otlp", s)) => (Some(Protocol::Otlp), s.to_owned()),
        Some(_) => return Err("has an unknown protocol before + (pyroscope+ or otlp+)"),
        None => (None, scheme.to_ascii_lowercase()),
    };
    let https = match scheme.as_str() {
        "http" => false,
        "https" => true,
        _ => return Err("is not an http:// or https:// URL"),
    };
    let protocol = named.or(protocol).unwrap_or(Protocol::Pyroscope);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.contains(['?', '#']) {
        return Err("has a query or fragment");
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let basic = match userinfo {
        None => None,
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let user = percent_decode(user).ok_or("has a malformed %-escape in its user")?;
            let pass = percent_decode(pass).ok_or("has a malformed %-escape in its password")?;
            Some((user, Secret(pass)))
        }
    };
    let host_ok = if let Some(v6) = hostport.strip_prefix('[') {
        let (ip, after) = v6.split_once(']').ok_or("has an unclosed [ in its host")?;
        ip.parse::<std::net::Ipv6Addr>().is_ok() && (after.is_empty() || port_ok(after))
    } else {
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
            && port.is_none_or(|p| port_ok(&format!(":{p}")))
    };
    if !host_ok {
        return Err("has no valid host[:port]");
    }
    let path = path.trim_end_matches('/');
    let endpoint = if path.ends_with(protocol.path()) {
        format!("{scheme}://{hostport}{path}")
    } else {
        format!("{scheme}://{hostport}{path}{}", protocol.path())
    };
    Ok(Push {
        protocol,
        endpoint,
        https,
        basic,
        token: None,
        tenant: None,
        period_s: DEFAULT_PUSH_PERIOD_S,
    })
}

fn port_ok(colon_port: &str) -> bool {
    colon_port
        .strip_prefix(':')
        .and_then(|p| p.parse::<u16>().ok())
        .is_some_and(|p| p > 0)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `name` can be a label name in Pyroscope and Prometheus (`[A-Za-z_][A-Za-z0-9_]*`),
/// and is not one of the reserved `__…` names.
pub fn label_name_ok(name: &str) -> bool {
    let mut c = name.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Parses `RPROF_LABELS=k=v,k2=v2`: the pairs that are well formed, and the malformed
/// items (each left out).
pub fn parse_labels(v: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut good: Vec<(String, String)> = Vec::new();
    let mut bad = Vec::new();
    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            Some((k, val))
                if label_name_ok(k.trim())
                    && !val.trim().is_empty()
                    && !val.chars().any(char::is_control)
                    && !good.iter().any(|g| g.0 == k.trim()) =>
            {
                good.push((k.trim().to_owned(), val.trim().to_owned()))
            }
            _ => bad.push(item.to_owned()),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let p = parse_url("http://127.0.0.1:4040", None).unwrap();
        assert_eq!(p.protocol, Protocol::Pyroscope);
        assert_eq!(
            p.endpoint,
            "http://127.0.0.1:4040/push.v1.PusherService/Push"
        );
        assert!(!p.https && p.basic.is_none());
        let p = parse_url("otlp+http://collector:4318/", None).unwrap();
        assert_eq!(p.protocol, Protocol::Otlp);
        assert_eq!(p.endpoint, "http://collector:4318/v1development/profiles");
        let p = parse_url("http://h:4318/v1development/profiles", Some(Protocol::Otlp)).unwrap();
        assert_eq!(p.endpoint, "http://h:4318/v1development/profiles");
        let p = parse_url("https://123:glc%3Ax@profiles.grafana.net/prefix", None).unwrap();
        assert!(p.https);
        assert_eq!(
            p.endpoint,
            "https://profiles.grafana.net/prefix/push.v1.PusherService/Push"
        );
        assert_eq!(
            p.basic,
            Some(("123".to_owned(), Secret("glc:x".to_owned())))
        );
        assert!(!format!("{p:?}").contains("glc"), "a secret was printed");
        assert_eq!(
            parse_url("http://[::1]:9/", None).unwrap().endpoint,
            "http://[::1]:9/push.v1.PusherService/Push"
        );
        for bad in [
            "localhost:4040",
            "ftp://h/",
            "http://",
            "http://h:0",
            "http://h:port",
            "http://h/x?y=1",
            "http://a b",
            "grpc+http://h",
            "http://[::1",
            "http://u:%zz@h",
        ] {
            assert!(parse_url(bad, None).is_err(), "{bad} was taken");
        }
    }

    #[test]
    fn labels() {
        let (good, bad) = parse_labels("env=prod, region = eu-1 ,bad,1x=y,__name__=z,env=dup,e=");
        assert_eq!(
            good,
            vec![
                ("env".to_owned(), "prod".to_owned()),
                ("region".to_owned(), "eu-1".to_owned())
            ]
        );
        assert_eq!(bad, vec!["bad", "1x=y", "__name__=z", "env=dup", "e="]);
    }
}
