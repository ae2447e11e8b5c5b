//! Addresses to functions, files and lines, with inlined calls (see `debuginfo` for where
//! names and lines come from; C++ and Rust names demangled). Runs outside signal context
//! only: at dumps, and before a dlclose.
//!
//! Cost: objects are opened once and kept (mapped, read as needed: see `debuginfo`);
//! addresses are resolved only when a profile is written, each object once per batch for
//! all its new addresses, and lines are cached by (object path, file offset) for the life
//! of the process.
//!
//! Unloading: an address in an object that a dlclose may unmap is resolved ("pinned")
//! before that dlclose, so samples keep the symbols and the mapping of a library that is
//! gone by the time the profile is written. Pinned frames are referred to by ids with the
//! top bit set, which no user-space address has.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use rprof_profile::LineInfo;

use crate::symbols::debuginfo::ObjectInfo;
use crate::symbols::maps::{self, MapEntry};

/// Marks a stack entry as the id of a pinned frame rather than an address.
pub const PINNED: u64 = 1 << 63;

/// Code spans fixed at load: of the objects loaded at startup (never unloaded), and of
/// librprof.so itself.
struct LoadTimeCode {
    startup: Vec<(u64, u64)>,
    own: (u64, u64),
}

static LOAD_TIME_CODE: OnceLock<LoadTimeCode> = OnceLock::new();

/// Replaces, in every stack, the addresses that `ids` maps (by `Symbolizer::pin`).
pub fn repin<'a>(stacks: impl IntoIterator<Item = &'a mut Vec<u64>>, ids: &HashMap<u64, u64>) {
    for stack in stacks {
        for pc in stack.iter_mut() {
            if let Some(&id) = ids.get(pc) {
                *pc = id;
            }
        }
    }
}

/// Records the code loaded at startup. Call once at load.
pub fn init() {
    let (startup, own) = maps::loaded_code();
    let _ = LOAD_TIME_CODE.set(LoadTimeCode { startup, own });
}

/// Whether `addr` may lie in an object that a dlclose can unmap.
pub fn may_unload(addr: u64) -> bool {
    LOAD_TIME_CODE
        .get()
        .is_some_and(|c| !c.startup.iter().any(|&(s, e)| (s..e).contains(&addr)))
}

/// A raw address (not a pinned id) in code that may be unloaded: what pinning before a
/// dlclose resolves.
pub fn needs_pinning(addr: u64) -> bool {
    addr & PINNED == 0 && may_unload(addr)
}

/// The span of librprof.so's code (empty before `init`).
pub fn own_code() -> (u64, u64) {
    LOAD_TIME_CODE.get().map_or((0, 0), |c| c.own)
}

/// The one symbolizer every consumer uses (pinned frames live in it). Lock order: after
/// `dump::STATE`, before the kinds' tables.
pub static SHARED: crate::signal_safe::lock::Lock<Option<Symbolizer>> =
    crate::signal_safe::lock::Lock::new(None);

/// `SHARED`, locked, the loader lookups a dump makes done first (`maps::prime_lookups`):
/// whoever holds it then never waits for the loader's lock, which a dlclose called from a
/// library destructor holds while it waits for `SHARED` (`dump::before_dlclose`). Not for
/// signal context: the lookups allocate (the dump files written in a handler skip them,
/// and the allocator's figures that need them).
pub fn lock_shared() -> crate::signal_safe::lock::Guard<'static, Option<Symbolizer>> {
    crate::symbols::maps::prime_lookups();
    SHARED.lock()
}

/// The shared symbolizer behind a guard of `SHARED`, made at first use.
pub fn shared(slot: &mut Option<Symbolizer>) -> &mut Symbolizer {
    slot.get_or_insert_with(Symbolizer::new)
}

/// A resolved address.
#[derive(Clone)]
pub struct Frame {
    pub address: u64,
    /// Index into [`Symbolizer::mappings`].
    pub mapping: Option<usize>,
    /// Innermost inlined call first; empty when nothing is known.
    pub lines: Vec<LineInfo>,
    /// How far the address lies into its function's symbol, where the symbol is known.
    pub symbol_offset: Option<u64>,
    /// In librprof.so itself.
    pub own: bool,
}

pub struct Symbolizer {
    lines: HashMap<(String, u64), (Vec<LineInfo>, Option<u64>)>,
    /// Loaded objects by (path, build ID); None when the file could not be read.
    objects: HashMap<(String, String), Option<ObjectInfo>>,
    /// Every mapping a frame of the current profile refers to.
    pub mappings: Vec<MapEntry>,
    /// Kept for the life of the process: heap profiles are cumulative and refer to them.
    pinned: Vec<Frame>,
    /// Pinned ids by (object path, file offset); ("", address) when no mapping was known.
    pinned_ids: HashMap<(String, u64), u64>,
    /// The executable mappings as last read, with the loader's generation then and when
    /// (CLOCK_MONOTONIC ns): a dump resolves a batch and then each profile's addresses,
    /// and reading /proc/self/maps (hundreds of lines in a large program) and every
    /// object's headers anew each time was much of a small dump.
    maps_cache: Option<MapsRead>,
    /// Names of JIT code (perf map, jitdump), read as they grow.
    perf: crate::symbols::perf_map::PerfMap,
}

/// (the loader's generation, when, the mappings).
type MapsRead = ((u64, u64), u64, Arc<maps::Mappings>);

/// How long the mappings read stay in use while the loader maps and unmaps nothing: a
/// dump's span. Code mapped otherwise meanwhile (a JIT's) would go unnamed until then.
const MAPS_REUSE_NS: u64 = 200_000_000;

/// Whether a mapping is librprof.so's own code.
fn is_own(m: &MapEntry) -> bool {
    // The segment's span need not be page-aligned as the mapping's is: they overlap.
    let (start, end) = own_code();
    m.start < end && start < m.end
}

impl Symbolizer {
    /// Call at load, once the startup objects are mapped.
    pub fn new() -> Self {
        Symbolizer {
            lines: HashMap::new(),
            objects: HashMap::new(),
            mappings: Vec::new(),
            pinned: Vec::new(),
            pinned_ids: HashMap::new(),
            maps_cache: None,
            perf: Default::default(),
        }
    }

    /// The executable mappings now (see `maps_cache`).
    fn current_mappings(&mut self) -> Arc<maps::Mappings> {
        let generation = maps::loader_generation();
        let now = crate::signal_safe::sys::monotonic_ns();
        if let Some((g, at, maps)) = &self.maps_cache {
            if *g == generation && now.saturating_sub(*at) < MAPS_REUSE_NS {
                return maps.clone();
            }
        }
        let maps = Arc::new(maps::read_mappings());
        self.maps_cache = Some((generation, now, maps.clone()));
        maps
    }

    /// Resolves `addrs` now; returns the pinned id standing for each.
    /// The same code (object file and offset in it) pinned again, after a library was
    /// loaded anew, wherever it was placed, reuses its id and its first frame, so a
    /// program that loads and unloads a plugin for days does not grow this table.
    pub fn pin(&mut self, addrs: Vec<u64>) -> HashMap<u64, u64> {
        let frames = self.resolve_batch(addrs);
        let mut ids = HashMap::with_capacity(frames.len());
        for f in frames {
            let key = match f.mapping.and_then(|i| self.mappings.get(i)) {
                Some(m) => (m.path.clone(), f.address - m.start + m.offset),
                None => (String::new(), f.address),
            };
            let id = match self.pinned_ids.get(&key) {
                Some(&id) => id,
                None => {
                    let id = PINNED | self.pinned.len() as u64;
                    self.pinned_ids.insert(key, id);
                    self.pinned.push(f.clone());
                    id
                }
            };
            ids.insert(f.address, id);
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

    fn resolve_batch(&mut self, mut addrs: Vec<u64>) -> Vec<Frame> {
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.is_empty() {
            return Vec::new();
        }
        let current = self.current_mappings();
        let found: Vec<Option<&MapEntry>> = addrs
            .iter()
            .map(|&a| current.files.iter().find(|m| (m.start..m.end).contains(&a)))
            .collect();
        // Each object is asked once, for all its addresses not resolved before.
        let mut wanted: HashMap<(&str, &str), (&MapEntry, Vec<u64>)> = HashMap::new();
        for (&addr, m) in addrs.iter().zip(&found) {
            if let Some(m) = *m {
                let offset = addr - m.start + m.offset;
                if !self.lines.contains_key(&(m.path.clone(), offset)) {
                    wanted
                        .entry((m.path.as_str(), m.build_id.as_str()))
                        .or_insert_with(|| (m, Vec::new()))
                        .1
                        .push(offset);
                }
            }
        }
        for (m, offsets) in wanted.into_values() {
            self.resolve_in(m, offsets);
        }
        // Code of no object: a JIT's, named by the perf map or jitdump it writes.
        if found.iter().any(Option::is_none) {
            self.perf.refresh(&current.jitdumps);
        }
        let mut out = Vec::with_capacity(addrs.len());
        for (addr, m) in addrs.into_iter().zip(found) {
            if m.is_none() {
                if let Some(f) = self.jit_frame(addr, &current.jit_code) {
                    out.push(f);
                    continue;
                }
            }
            let (lines, symbol_offset) = m
                .and_then(|m| self.lines.get(&(m.path.clone(), addr - m.start + m.offset)))
                .cloned()
                .unwrap_or_default();
            out.push(Frame {
                address: addr,
                mapping: m.map(|m| self.intern_mapping(m)),
                lines,
                symbol_offset,
                own: m.is_some_and(is_own),
            });
        }
        out
    }

    /// The frame of JIT code at `addr`, named as the perf map names it, in a mapping of its
    /// own (the anonymous code region holding it, under the map's file name).
    fn jit_frame(&mut self, addr: u64, jit_code: &[(u64, u64)]) -> Option<Frame> {
        let (name, start) = self.perf.lookup(addr)?;
        let line = LineInfo {
            function: name.to_owned(),
            system_name: name.to_owned(),
            filename: String::new(),
            line: 0,
        };
        let (lo, hi) = jit_code
            .iter()
            .copied()
            .find(|&(s, e)| (s..e).contains(&addr))
            .unwrap_or((start, addr + 1));
        let region = MapEntry {
            start: lo,
            end: hi,
            offset: 0,
            path: self.perf.path().to_owned(),
            build_id: String::new(),
        };
        Some(Frame {
            address: addr,
            mapping: Some(self.intern_mapping(&region)),
            lines: vec![line],
            symbol_offset: Some(addr - start),
            own: false,
        })
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

    /// Resolves file offsets of the object mapped by `m` into the cache.
    fn resolve_in(&mut self, m: &MapEntry, offsets: Vec<u64>) {
        let object = self
            .objects
            .entry((m.path.clone(), m.build_id.clone()))
            .or_insert_with(|| {
                // rprof's own frames (time in its hooks) need names only; its line tables
                // would cost megabytes of memory.
                ObjectInfo::load(&m.path, &m.build_id, !is_own(m))
            });
        let found = match object {
            Some(o) => o.resolve(&offsets),
            None => vec![Default::default(); offsets.len()],
        };
        for (offset, f) in offsets.into_iter().zip(found) {
            self.lines.insert((m.path.clone(), offset), f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn some_code() -> u64 {
        std::hint::black_box(7)
    }

    #[test]
    fn pinning_the_same_code_again_reuses_its_frame() {
        let mut s = Symbolizer::new();
        let addr = some_code as *const () as u64;
        let first = s.pin(vec![addr]);
        let again = s.pin(vec![addr]);
        assert_eq!(first[&addr], again[&addr]);
        assert_eq!(s.pinned.len(), 1);
        let frames = s.resolve_all([first[&addr]]);
        let f = &frames[&first[&addr]];
        assert!(
            f.lines.iter().any(|l| l.function.ends_with("some_code")),
            "{:?}",
            f.lines
        );
    }
}
