//! Names of JIT-compiled code, as the runtime that generated it wrote them for perf:
//! `/tmp/perf-<pid>.map` (`START SIZE name` per line, hex; Node's `--perf-basic-prof`,
//! Python's `-X perf`, the JVM's `-XX:+DumpPerfMapAtExit`) and jitdump files
//! (`jit-<pid>.dump`, found as the runtime maps it; its code-load records).
//!
//! Both grow while the program runs: each is read again from where the last read ended
//! when it has grown, so a dump costs a `stat` when nothing is new. A later entry for the
//! same start address replaces the earlier one (a JIT reuses freed code space).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

/// One source of names, read up to `read`.
struct Source {
    path: String,
    read: u64,
    jitdump: bool,
}

#[derive(Default)]
pub struct PerfMap {
    sources: Vec<Source>,
    /// start → (end, name).
    entries: BTreeMap<u64, (u64, String)>,
    /// The pid the sources were found for (a fork child looks for its own).
    pid: u32,
}

impl PerfMap {
    /// Reads what was appended to the sources since the last call; `jitdumps`: the jitdump
    /// files mapped now.
    pub fn refresh(&mut self, jitdumps: &[String]) {
        let pid = std::process::id();
        if self.pid != pid {
            *self = PerfMap {
                pid,
                ..Default::default()
            };
            self.sources.push(Source {
                path: format!("/tmp/perf-{pid}.map"),
                read: 0,
                jitdump: false,
            });
        }
        for path in jitdumps {
            if !self.sources.iter().any(|s| &s.path == path) {
                self.sources.push(Source {
                    path: path.clone(),
                    read: 0,
                    jitdump: true,
                });
            }
        }
        for i in 0..self.sources.len() {
            let (path, from, jitdump) = {
                let s = &self.sources[i];
                (s.path.clone(), s.read, s.jitdump)
            };
            let Some(new) = read_from(&path, from) else {
                continue;
            };
            let used = if jitdump {
                parse_jitdump(&new, from == 0, &mut self.entries)
            } else {
                parse_map(&new, &mut self.entries)
            };
            self.sources[i].read = from + used as u64;
        }
    }

    /// The name of the code at `addr`, and its start.
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64)> {
        let (&start, (end, name)) = self.entries.range(..=addr).next_back()?;
        (addr < *end).then_some((name.as_str(), start))
    }

    /// The map file's path, for the mapping its names are shown in.
    pub fn path(&self) -> &str {
        self.sources.first().map_or("", |s| s.path.as_str())
    }
}

/// The bytes of `path` past `from`, when it has grown.
fn read_from(path: &str, from: u64) -> Option<Vec<u8>> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if len <= from {
        return None;
    }
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::with_capacity((len - from) as usize);
    f.take(len - from).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Parses whole lines of a perf map; returns the bytes used (up to the last newline: a
/// line being written is read next time).
fn parse_map(buf: &[u8], out: &mut BTreeMap<u64, (u64, String)>) -> usize {
    let Some(last) = buf.iter().rposition(|&b| b == b'\n') else {
        return 0;
    };
    for line in buf[..last].split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let mut f = line.trim_end().splitn(3, ' ');
        let (Some(start), Some(size), Some(name)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let start = u64::from_str_radix(start.trim_start_matches("0x"), 16);
        let size = u64::from_str_radix(size.trim_start_matches("0x"), 16);
        if let (Ok(start), Ok(size)) = (start, size) {
            if size > 0 {
                out.insert(start, (start.saturating_add(size), name.to_owned()));
            }
        }
    }
    last + 1
}

/// The jitdump format (tools/perf/Documentation/jitdump-specification.txt): a header,
/// then records `{id: u32, total_size: u32, timestamp: u64, ...}`; JIT_CODE_LOAD (id 0) is
/// `{pid: u32, tid: u32, vma: u64, code_addr: u64, code_size: u64, code_index: u64,
/// name: NUL-terminated, code}`. Returns the bytes used (whole records only).
fn parse_jitdump(buf: &[u8], with_header: bool, out: &mut BTreeMap<u64, (u64, String)>) -> usize {
    const MAGIC: u32 = 0x4A69_5444;
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
    };
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(buf.get(at..at + 8)?.try_into().ok()?))
    };
    let mut at = 0usize;
    if with_header {
        if u32_at(0) != Some(MAGIC) {
            return 0;
        }
        let Some(size) = u32_at(8) else {
            return 0;
        };
        at = size as usize;
    }
    while let (Some(id), Some(size)) = (u32_at(at), u32_at(at + 4)) {
        let size = size as usize;
        if size < 16 || at + size > buf.len() {
            break;
        }
        if id == 0 {
            let body = at + 16;
            if let (Some(addr), Some(code_size)) = (u64_at(body + 16), u64_at(body + 24)) {
                let name_at = body + 40;
                let name_end = buf[name_at.min(at + size)..at + size]
                    .iter()
                    .position(|&b| b == 0)
                    .map(|n| name_at + n);
                if let Some(end) = name_end {
                    let name = String::from_utf8_lossy(&buf[name_at..end]).into_owned();
                    out.insert(addr, (addr.saturating_add(code_size), name));
                }
            }
        }
        at += size;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_appended_lines_and_later_entries_win() {
        let mut m = BTreeMap::new();
        let used = parse_map(b"1000 10 JS:*a /x.js:1:1\n2000 20 b\n30", &mut m);
        assert_eq!(used, 34);
        parse_map(b"1000 8 c\n", &mut m);
        let p = PerfMap {
            entries: m,
            ..Default::default()
        };
        assert_eq!(p.lookup(0x1004), Some(("c", 0x1000)));
        assert_eq!(p.lookup(0x1009), None);
        assert_eq!(p.lookup(0x201f), Some(("b", 0x2000)));
        assert_eq!(p.lookup(0x2020), None);
    }

    #[test]
    fn reads_jitdump_code_loads() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&0x4A69_5444u32.to_le_bytes());
        buf.extend_from_slice(&1u32.to_le_bytes());
        buf.extend_from_slice(&40u32.to_le_bytes());
        buf.resize(40, 0);
        let name = b"hot_fn\0";
        let size = 16 + 40 + name.len() + 4;
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&(size as u32).to_le_bytes());
        buf.extend_from_slice(&0u64.to_le_bytes());
        buf.extend_from_slice(&[0; 8]); // pid, tid
        buf.extend_from_slice(&0x5000u64.to_le_bytes()); // vma
        buf.extend_from_slice(&0x5000u64.to_le_bytes()); // code_addr
        buf.extend_from_slice(&4u64.to_le_bytes()); // code_size
        buf.extend_from_slice(&1u64.to_le_bytes()); // code_index
        buf.extend_from_slice(name);
        buf.extend_from_slice(&[0x90; 4]);
        let mut m = BTreeMap::new();
        assert_eq!(parse_jitdump(&buf, true, &mut m), buf.len());
        assert_eq!(m.get(&0x5000), Some(&(0x5004, "hot_fn".to_owned())));
    }
}
