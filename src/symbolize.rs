//! Addresses to functions, files and lines, with inlined calls, using the debug info of
//! the loaded objects (backtrace's gimli symbolizer; C++ and Rust names demangled).
//! Runs outside signal context only: at dumps, and before a dlclose.
//!
//! Cost: symbolizing means parsing an object's debug info, and backtrace keeps only four
//! objects parsed. So addresses are resolved in batches sorted by address (one object at a
//! time), only when a profile is written; and lines are cached by (object path, file
//! offset) for the life of the process.
//!
//! Unloading: an address in an object that a dlclose may unmap is resolved ("pinned")
//! before that dlclose, so samples keep the symbols and the mapping of a library that is
//! gone by the time the profile is written. Pinned frames are referred to by ids with the
//! top bit set, which no user-space address has.

use std::collections::{HashMap, HashSet};

use rprof_profile::LineInfo;

use crate::maps::{self, MapEntry};

/// Marks a stack entry as the id of a pinned frame rather than an address.
pub const PINNED: u64 = 1 << 63;

/// A resolved address.
#[derive(Clone)]
pub struct Frame {
    pub address: u64,
    /// Index into [`Symbolizer::mappings`].
    pub mapping: Option<usize>,
    /// Innermost inlined call first; empty when nothing is known.
    pub lines: Vec<LineInfo>,
    /// In librprof.so itself.
    pub own: bool,
}

pub struct Symbolizer {
    lines: HashMap<(String, u64), Vec<LineInfo>>,
    /// (path, start) of the mappings that existed when backtrace's object list was last reset.
    backtrace_knows: HashSet<(String, u64)>,
    /// Every mapping a frame of the current profile refers to.
    pub mappings: Vec<MapEntry>,
    pinned: Vec<Frame>,
    /// Code of the objects loaded at startup, which are never unloaded.
    startup_code: Vec<(u64, u64)>,
    own_path: Option<String>,
}

impl Symbolizer {
    /// Call at load, once the startup objects are mapped.
    pub fn new() -> Self {
        let startup_code = maps::executable_mappings()
            .iter()
            .map(|m| (m.start, m.end))
            .collect();
        Symbolizer {
            lines: HashMap::new(),
            backtrace_knows: HashSet::new(),
            mappings: Vec::new(),
            pinned: Vec::new(),
            startup_code,
            own_path: maps::own_object_path(),
        }
    }

    /// Whether `addr` may lie in an object that a dlclose can unmap.
    pub fn may_unload(&self, addr: u64) -> bool {
        !self
            .startup_code
            .iter()
            .any(|&(s, e)| (s..e).contains(&addr))
    }

    /// Resolves `addrs` now; returns the pinned id standing for each.
    pub fn pin(&mut self, addrs: Vec<u64>) -> HashMap<u64, u64> {
        let frames = self.resolve_batch(addrs);
        let mut ids = HashMap::with_capacity(frames.len());
        for f in frames {
            ids.insert(f.address, PINNED | self.pinned.len() as u64);
            self.pinned.push(f);
        }
        ids
    }

    /// Frames for every stack entry in `refs` (addresses or pinned ids).
    pub fn resolve_all(&mut self, refs: impl IntoIterator<Item = u64>) -> HashMap<u64, Frame> {
        let mut out = HashMap::new();
        let mut addrs = Vec::new();
        for r in refs {
            if r & PINNED != 0 {
                if let Some(f) = self.pinned.get((r & !PINNED) as usize) {
                    out.insert(r, f.clone());
                }
            } else {
                addrs.push(r);
            }
        }
        for f in self.resolve_batch(addrs) {
            out.insert(f.address, f);
        }
        out
    }

    /// Starts a new profile: pinned frames and mappings belonged to the previous one.
    pub fn clear_profile_state(&mut self) {
        self.pinned.clear();
        self.mappings.clear();
    }

    fn resolve_batch(&mut self, mut addrs: Vec<u64>) -> Vec<Frame> {
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.is_empty() {
            return Vec::new();
        }
        let current = maps::executable_mappings();
        let mut out = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let m = current.iter().find(|m| (m.start..m.end).contains(&addr));
            let lines = match m {
                Some(m) => self.lines_in(m, addr, &current),
                None => Vec::new(),
            };
            out.push(Frame {
                address: addr,
                mapping: m.map(|m| self.intern_mapping(m)),
                lines,
                own: m.is_some_and(|m| Some(&m.path) == self.own_path.as_ref()),
            });
        }
        out
    }

    fn intern_mapping(&mut self, m: &MapEntry) -> usize {
        let same = |k: &MapEntry| {
            (k.start, k.end, k.offset, &k.path) == (m.start, m.end, m.offset, &m.path)
        };
        if let Some(i) = self.mappings.iter().position(same) {
            return i;
        }
        self.mappings.push(m.clone());
        self.mappings.len() - 1
    }

    fn lines_in(&mut self, m: &MapEntry, addr: u64, current: &[MapEntry]) -> Vec<LineInfo> {
        let key = (m.path.clone(), addr - m.start + m.offset);
        if let Some(lines) = self.lines.get(&key) {
            return lines.clone();
        }
        // backtrace lists the loaded objects once; clear that list (which drops its parsed
        // debug info) only when it cannot know this mapping.
        if !self.backtrace_knows.contains(&(m.path.clone(), m.start)) {
            if !self.backtrace_knows.is_empty() {
                backtrace::clear_symbol_cache();
            }
            self.backtrace_knows = current.iter().map(|c| (c.path.clone(), c.start)).collect();
        }
        let lines = lines_at(addr);
        self.lines.insert(key, lines.clone());
        lines
    }
}

fn lines_at(addr: u64) -> Vec<LineInfo> {
    let mut out = Vec::new();
    backtrace::resolve(addr as *mut std::ffi::c_void, |sym| {
        let Some(name) = sym.name() else { return };
        let system_name = String::from_utf8_lossy(name.as_bytes()).into_owned();
        let demangled = format!("{name:#}");
        out.push(LineInfo {
            function: if demangled.is_empty() {
                system_name.clone()
            } else {
                demangled
            },
            system_name,
            filename: sym
                .filename()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            line: sym.lineno().map_or(0, i64::from),
        });
    });
    out
}
