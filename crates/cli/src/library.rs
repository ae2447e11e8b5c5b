//! Where the librprof.so that `rprof run` preloads (and `rprof lib` prints) is found:
//! `$RPROF_LIB`; beside this executable (a checkout's `target/release`); the copy embedded
//! in this executable (`cargo install`, see build.rs), written once to the per-user cache
//! under a name keyed by its contents and checked before each use; where the Debian
//! package puts it; under ./target/{release,debug}.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// Where the Debian package installs the library (on the linker's path).
const PACKAGED: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/librprof.so",
    "/usr/local/lib/librprof.so",
];

pub fn find() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("RPROF_LIB") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("RPROF_LIB={} is not a file", p.display()))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("librprof.so")));
    if let Some(p) = beside.as_ref().filter(|p| p.is_file()) {
        return std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
    }
    let mut why_not_embedded = None;
    if let Some(bytes) = embedded::LIBRARY {
        match extract(bytes) {
            Ok(p) => return Ok(p),
            Err(e) => why_not_embedded = Some(e),
        }
    }
    let rest: Vec<PathBuf> = PACKAGED
        .iter()
        .map(PathBuf::from)
        .chain(["target/release/librprof.so", "target/debug/librprof.so"].map(PathBuf::from))
        .collect();
    if let Some(p) = rest.iter().find(|p| p.is_file()) {
        return std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
    }
    let tried: Vec<PathBuf> = beside.into_iter().chain(rest).collect();
    Err(format!(
        "librprof.so not found (looked at {}){}; build it with `cargo build --release` or set RPROF_LIB",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        why_not_embedded.map_or(String::new(), |e| format!(", and the embedded copy could not be written: {e}"))
    ))
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The embedded library as a file: in the per-user cache, named by rprof's version and a
/// digest of the bytes; written when missing or when what is there differs.
fn extract(bytes: &[u8]) -> Result<PathBuf, String> {
    let dir = cache_dir()?;
    let name = format!(
        "librprof-{}-{:016x}.so",
        env!("CARGO_PKG_VERSION"),
        digest(bytes)
    );
    let path = dir.join(name);
    if let Ok(there) = std::fs::read(&path) {
        if there.len() == bytes.len() && digest(&there) == digest(bytes) {
            return Ok(path);
        }
    }
    let tmp = dir.join(format!(".librprof.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(path)
}

/// `$XDG_CACHE_HOME/rprof`, else `~/.cache/rprof`, else `$TMPDIR/rprof-<uid>` (made
/// private, and used only when it is this user's and no one else can write in it).
fn cache_dir() -> Result<PathBuf, String> {
    let home_cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("rprof"));
    if let Some(d) = home_cache {
        if std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .is_ok()
        {
            return Ok(d);
        }
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let tmp = std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(format!("rprof-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&tmp);
    let m = std::fs::symlink_metadata(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    if m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o022 == 0 {
        Ok(tmp)
    } else {
        Err(format!(
            "{} is not a private directory of this user",
            tmp.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_embedded_copy_is_written_once_and_checked() {
        let dir = std::env::temp_dir().join(format!("rprof-embed-test-{}", std::process::id()));
        std::env::set_var("XDG_CACHE_HOME", &dir);
        let a = super::extract(b"library one").unwrap();
        assert!(a.starts_with(&dir));
        assert_eq!(std::fs::read(&a).unwrap(), b"library one");
        // A copy changed since is written again.
        std::fs::write(&a, b"tampered!!!").unwrap();
        assert_eq!(super::extract(b"library one").unwrap(), a);
        assert_eq!(std::fs::read(&a).unwrap(), b"library one");
        // Other bytes, another name.
        assert_ne!(super::extract(b"library two").unwrap(), a);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
