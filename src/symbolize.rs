//! Addresses to functions, files and lines, with inlined calls (see `debuginfo` for where
//! names and lines come from; C++ and Rust names demangled). Runs outside signal context
//! only: at dumps, and before a dlclose.
//!
//! Cost: objects are loaded once and kept; addresses are resolved only when a profile is
//! written, and lines are cached by (object path, file offset) for the life of the process.
//!
//! Unloading: an address in an object that a dlclose may unmap is resolved ("pinned")
//! before that dlclose, so samples keep the symbols and the mapping of a library that is
//! gone by the time the profile is written. Pinned frames are referred to by ids with the
//! top bit set, which no user-space address has.

use std::collections::HashMap;

use rprof_profile::LineInfo;

use crate::debuginfo::ObjectInfo;
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
    /// Loaded objects by (path, build ID); None when the file could not be read.
    objects: HashMap<(String, String), Option<ObjectInfo>>,
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
            objects: HashMap::new(),
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
                Some(m) => self.lines_in(m, addr),
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

    fn lines_in(&mut self, m: &MapEntry, addr: u64) -> Vec<LineInfo> {
        let offset = addr - m.start + m.offset;
        let key = (m.path.clone(), offset);
        if let Some(lines) = self.lines.get(&key) {
            return lines.clone();
        }
        let object = self
            .objects
            .entry((m.path.clone(), m.build_id.clone()))
            .or_insert_with(|| ObjectInfo::load(&m.path, &m.build_id));
        let lines = object.as_ref().map(|o| o.lines(offset)).unwrap_or_default();
        self.lines.insert(key, lines.clone());
        lines
    }
}
