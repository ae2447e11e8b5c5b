//! Addresses to functions, files and lines, with inlined calls, using the debug info of
//! the loaded objects (backtrace's gimli symbolizer; C++ and Rust names demangled).
//!
//! Addresses are resolved when samples are drained (every 100 ms, and before each dlclose),
//! not at dump time, so samples from a library that is unloaded later keep its symbols
//! and its mapping. A [`FrameTable`] holds one [`Frame`] per resolved address; the
//! address → frame index is dropped whenever objects may have been unloaded, so an
//! address reused by another library is resolved afresh. Runs outside signal context only.

use std::collections::{HashMap, HashSet};

use rprof_profile::LineInfo;

use crate::maps::{self, MapEntry};

/// A resolved address: its mapping (an index into [`FrameTable::mappings`]) and its lines,
/// innermost inlined call first (empty when nothing is known).
pub struct Frame {
    pub address: u64,
    pub mapping: Option<usize>,
    pub lines: Vec<LineInfo>,
    /// In librprof.so itself.
    pub own: bool,
}

pub type FrameId = u32;

#[derive(Default)]
pub struct FrameTable {
    pub frames: Vec<Frame>,
    /// Every executable mapping seen since the table was created.
    pub mappings: Vec<MapEntry>,
    index: HashMap<u64, FrameId>,
    /// Indices into `mappings` of what is mapped now.
    current: Vec<usize>,
    /// glibc's counts of objects loaded and unloaded when `current` was read.
    generation: Option<(u64, u64)>,
    own_path: Option<String>,
}

/// Lines by (object path, file offset), kept for the life of the process, so an object
/// loaded again (a dlopen loop) needs no new symbolization.
///
/// backtrace caches the list of loaded objects when it first symbolizes. Clearing that
/// cache makes it parse debug info again (tens of milliseconds for libc), so it is cleared
/// only when an address must be looked up in a mapping it has not seen.
#[derive(Default)]
pub struct LineCache {
    lines: HashMap<(String, u64), Vec<LineInfo>>,
    /// (path, start) of the mappings that existed when backtrace's cache was last reset.
    backtrace_knows: HashSet<(String, u64)>,
}

impl LineCache {
    fn lines(&mut self, m: Option<&MapEntry>, addr: u64, current: &[&MapEntry]) -> Vec<LineInfo> {
        let Some(m) = m else {
            return lines_at(addr);
        };
        let key = (m.path.clone(), addr - m.start + m.offset);
        if let Some(lines) = self.lines.get(&key) {
            return lines.clone();
        }
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

impl FrameTable {
    /// The frame for `addr`.
    pub fn resolve(&mut self, addr: u64, cache: &mut LineCache) -> FrameId {
        if let Some(&id) = self.index.get(&addr) {
            return id;
        }
        self.refresh_if_objects_changed();
        let mapping = self.current.iter().copied().find(|&i| {
            self.mappings
                .get(i)
                .is_some_and(|m| (m.start..m.end).contains(&addr))
        });
        let m = mapping.and_then(|i| self.mappings.get(i));
        let own = m.is_some_and(|m| Some(&m.path) == self.own_path.as_ref());
        let id = self.frames.len() as FrameId;
        self.frames.push(Frame {
            address: addr,
            mapping,
            lines: cache.lines(m, addr, &self.current_mappings()),
            own,
        });
        self.index.insert(addr, id);
        id
    }

    /// The frames of a stack (leaf first), without rprof's own frames except at the leaf
    /// end, where they are real time spent in rprof's hooks.
    pub fn stack(&mut self, pcs: &[u64], cache: &mut LineCache) -> Vec<FrameId> {
        let mut out = Vec::with_capacity(pcs.len());
        let mut at_leaf = true;
        for &pc in pcs {
            let id = self.resolve(pc, cache);
            let own = self.frames.get(id as usize).is_some_and(|f| f.own);
            at_leaf &= own;
            if !own || at_leaf {
                out.push(id);
            }
        }
        out
    }

    fn current_mappings(&self) -> Vec<&MapEntry> {
        self.current
            .iter()
            .filter_map(|&i| self.mappings.get(i))
            .collect()
    }

    fn refresh_if_objects_changed(&mut self) {
        let generation = maps::objects_generation();
        if self.generation == Some(generation) {
            return;
        }
        self.index.clear();
        self.generation = Some(generation);
        if self.own_path.is_none() {
            self.own_path = maps::own_object_path();
        }
        self.current.clear();
        for m in maps::executable_mappings() {
            let i = match self.mappings.iter().position(|k| {
                (k.start, k.end, k.offset, &k.path) == (m.start, m.end, m.offset, &m.path)
            }) {
                Some(i) => i,
                None => {
                    self.mappings.push(m);
                    self.mappings.len() - 1
                }
            };
            self.current.push(i);
        }
    }
}

fn lines_at(addr: u64) -> Vec<LineInfo> {
    let mut out = Vec::new();
    backtrace::resolve(addr as *mut std::ffi::c_void, |sym| {
        let Some(name) = sym.name() else { return };
        out.push(LineInfo {
            function: format!("{name:#}"),
            system_name: String::from_utf8_lossy(name.as_bytes()).into_owned(),
            filename: sym
                .filename()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            line: sym.lineno().map_or(0, i64::from),
        });
    });
    out
}
