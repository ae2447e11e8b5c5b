//! Symbols and line tables of one object file (ELF), read in place from the file.
//!
//! Why not backtrace's symbolizer: it loads the separate debug file of every object
//! (/usr/lib/debug/.build-id/…) and decompresses all of its DWARF; for glibc with libc6-dbg
//! that raised a small program's peak RSS by 36 MB at exit. Here:
//! - function names come from the object's own `.symtab`, else from the `.symtab` of its
//!   separate debug file (found by build ID; reading a symbol table needs no
//!   decompression), else from `.dynsym`;
//! - files, lines and inlined calls come from the DWARF in the object itself (what
//!   `cc -g` produces), never from a separate debug file.
//!
//! Cost in proportion to the addresses named, not to the object: the file stays mapped
//! read-only and nothing is copied out of it whole. A batch of addresses is named by one
//! pass over the symbol table's entries (read a chunk at a time, each chunk's pages given
//! back once read, so a 4 MB `.symtab` does not stay in the RSS); only the names of the
//! symbols that contain one of the addresses are read and copied. DWARF sections are
//! referred to in the mapping (a compressed one is the only copy), and addr2line parses
//! only the units the addresses fall in. PLT entries are named only when an address lies
//! in a PLT section.
#![allow(unsafe_code)]

use std::borrow::Cow;

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, ObjectSymbolTable};
use rprof_profile::LineInfo;

use super::dwarf::*;
use super::elf_symbols::*;
use super::image::{Image, Reader};

/// The separate debug file of an object with this build ID, in Debian's layout.
fn debug_file(build_id: &str) -> Option<String> {
    if build_id.len() < 3 {
        return None;
    }
    let p = format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &build_id[..2],
        &build_id[2..]
    );
    std::path::Path::new(&p).exists().then_some(p)
}

/// What is known of one object file; its parts are read as addresses need them.
pub struct ObjectInfo {
    // Drop order matters: `dwarf` borrows `owned` and the images, so it is declared (and
    // dropped) first.
    /// The parsed DWARF: None until lines are first asked for, then Some(None) without any.
    dwarf: Option<Option<Dwarf>>,
    /// Decompressed DWARF sections, by name.
    owned: Vec<(String, Box<[u8]>)>,
    with_lines: bool,
    /// PT_LOAD segments: (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
    /// Candidate symbol tables in order of preference; the first with a function symbol
    /// is used (`chosen`, once a scan has found out).
    tables: Vec<SymbolTable>,
    chosen: Option<usize>,
    preferred: &'static str,
    plt_ranges: Vec<(u64, u64)>,
    /// The file ranges of the DWARF sections, given back after each lookup.
    dwarf_ranges: Vec<std::ops::Range<usize>>,
    /// Named PLT entries, made when an address first falls in a PLT section.
    plt: Option<Vec<PltEntry>>,
    /// The object's headers, parsed once (they borrow `image`, declared after).
    file: object::File<'static>,
    image: Image,
    debug_image: Option<Image>,
}

impl ObjectInfo {
    /// Opens `path` for symbolizing (its DWARF lines too if `with_lines`); None if it
    /// cannot be read. Reads only the headers now.
    pub fn load(path: &str, build_id: &str, with_lines: bool) -> Option<ObjectInfo> {
        let image = if path == "[vdso]" {
            Image::vdso()?
        } else {
            Image::map(path)?
        };
        let file = object::File::parse(image.bytes()).ok()?;
        let segments = file
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (off, size, s.address())
            })
            .collect();
        let mut tables: Vec<SymbolTable> =
            symbol_table(&file, ".symtab", false).into_iter().collect();
        let debug_image = debug_file(build_id).and_then(|p| Image::map(&p));
        if let Some(d) = &debug_image {
            if let Ok(dfile) = object::File::parse(d.bytes()) {
                tables.extend(symbol_table(&dfile, ".symtab", true));
            }
        }
        tables.extend(symbol_table(&file, ".dynsym", false));
        Some(ObjectInfo {
            dwarf: None,
            owned: Vec::new(),
            with_lines,
            segments,
            tables,
            chosen: None,
            preferred: if path == "[vdso]" { "__vdso_" } else { "" },
            plt_ranges: plt_ranges(&file),
            dwarf_ranges: file
                .sections()
                .filter(|s| s.name().is_ok_and(|n| n.starts_with(".debug_")))
                .filter_map(|s| {
                    let (off, size) = s.file_range()?;
                    Some(off as usize..(off + size) as usize)
                })
                .collect(),
            plt: None,
            file,
            image,
            debug_image,
        })
    }

    fn svma(&self, file_offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|&&(off, size, _)| (off..off + size).contains(&file_offset))
            .map(|&(off, _, vaddr)| file_offset - off + vaddr)
    }

    /// The function symbol containing each of `svmas` (sorted, distinct): (name, start).
    fn symbols(&mut self, svmas: &[u64]) -> Vec<Option<(String, u64)>> {
        let order: Vec<usize> = match self.chosen {
            Some(i) => vec![i],
            None => (0..self.tables.len()).collect(),
        };
        for i in order {
            let table = self.tables[i].clone();
            let image = match (table.in_debug_file, &self.debug_image) {
                (false, _) => &self.image,
                (true, Some(d)) => d,
                (true, None) => continue,
            };
            let (functions, hits) = scan(image, &table, svmas, self.preferred);
            if functions == 0 {
                continue;
            }
            self.chosen = Some(i);
            let strings = image.bytes().get(table.strings.clone()).unwrap_or_default();
            return hits
                .into_iter()
                .map(|h| h.and_then(|h| Some((name_at(strings, h.name)?.to_owned(), h.start))))
                .collect();
        }
        vec![None; svmas.len()]
    }

    /// The PLT entry containing `svma`, if any.
    fn plt_entry(&mut self, svma: u64) -> Option<(String, u64)> {
        if !self.plt_ranges.iter().any(|&(s, e)| (s..e).contains(&svma)) {
            return None;
        }
        if self.plt.is_none() {
            let bytes = self.image.bytes();
            let entries = match object::File::parse(bytes) {
                Ok(file) => plt_entries(&file, |at| {
                    let found = self.symbols(at);
                    at.iter()
                        .zip(found)
                        .map(|(&a, f)| f.filter(|(_, start)| *start == a).map(|(n, _)| n))
                        .collect()
                }),
                Err(_) => Vec::new(),
            };
            self.plt = Some(entries);
        }
        let plt = self.plt.as_ref()?;
        let i = plt.partition_point(|e| e.start <= svma);
        let e = plt.get(i.checked_sub(1)?)?;
        (svma < e.end).then(|| (e.name.clone(), e.start))
    }

    /// The DWARF context for an address (None: no DWARF, or lines not wanted).
    fn context(&mut self, svma: u64) -> Option<&addr2line::Context<Reader>> {
        if !self.with_lines {
            return None;
        }
        if self.dwarf.is_none() {
            let (image, ranges) = (&self.image, &self.dwarf_ranges);
            let give_back = || ranges.iter().for_each(|r| image.release(r.clone()));
            self.dwarf = Some(Dwarf::new(&self.file, &mut self.owned, &give_back));
        }
        self.dwarf
            .as_mut()?
            .as_mut()?
            .context_for(svma, &self.file, &mut self.owned)
    }

    /// For each file offset of the object: its lines (innermost inlined call first) and how
    /// far it lies into its function symbol (Go's `pc - entry` in its text profiles).
    pub fn resolve(&mut self, file_offsets: &[u64]) -> Vec<(Vec<LineInfo>, Option<u64>)> {
        let svmas: Vec<Option<u64>> = file_offsets.iter().map(|&o| self.svma(o)).collect();
        let mut sorted: Vec<u64> = svmas.iter().flatten().copied().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut named = self.symbols(&sorted);
        for (i, &a) in sorted.iter().enumerate() {
            if let Some(plt) = self.plt_entry(a) {
                named[i] = Some(plt);
            }
        }
        svmas
            .iter()
            .map(|svma| {
                let Some(svma) = *svma else {
                    return (Vec::new(), None);
                };
                let symbol = sorted
                    .binary_search(&svma)
                    .ok()
                    .and_then(|i| named[i].as_ref());
                let lines = self.lines_at(svma, symbol.map(|(n, _)| n.as_str()));
                (lines, symbol.map(|&(_, start)| svma - start))
            })
            .collect()
    }

    fn lines_at(&mut self, svma: u64, symbol: Option<&str>) -> Vec<LineInfo> {
        let mut out = Vec::new();
        if let Some(ctx) = self.context(svma) {
            if let Ok(mut frames) = ctx.find_frames(svma).skip_all_loads() {
                while let Ok(Some(frame)) = frames.next() {
                    let raw = frame
                        .function
                        .as_ref()
                        .and_then(|f| f.raw_name().ok().map(Cow::into_owned));
                    let name = raw.as_deref().map(demangle);
                    let (file, line) = frame
                        .location
                        .map(|l| (l.file.unwrap_or("").to_owned(), l.line.unwrap_or(0)))
                        .unwrap_or_default();
                    out.push(LineInfo {
                        function: name.or_else(|| symbol.map(demangle)).unwrap_or_default(),
                        system_name: raw
                            .or_else(|| symbol.map(str::to_owned))
                            .unwrap_or_default(),
                        filename: file,
                        line: i64::from(line),
                    });
                }
            }
            // What was read of the DWARF (a unit's entries and line program, parsed and kept
            // by addr2line now) leaves the RSS again: the peak holds one unit's pages, not
            // every unit's the addresses fall in.
            for r in &self.dwarf_ranges {
                self.image.release(r.clone());
            }
        }
        if out.is_empty() {
            if let Some(sym) = symbol {
                out.push(LineInfo {
                    function: demangle(sym),
                    system_name: sym.to_owned(),
                    ..LineInfo::default()
                });
            }
        }
        out
    }
}

/// Rust and C++ names demangled as pprof shows them: without parameter lists or return
/// types (pprof's default "simplified" names keep namespaces and classes).
fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if name.starts_with("_Z") {
        let options = cpp_demangle::DemangleOptions::new()
            .no_params()
            .no_return_type();
        if let Ok(s) = cpp_demangle::Symbol::new(name).and_then(|s| {
            s.demangle_with_options(&options)
                .map_err(|_| cpp_demangle::error::Error::UnexpectedEnd)
        }) {
            return s;
        }
    }
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn probe_function() -> u64 {
        std::hint::black_box(1)
    }

    #[test]
    fn symbolizes_this_test_binary() {
        let maps = crate::symbols::maps::read_mappings().files;
        let addr = probe_function as *const () as u64;
        let m = maps
            .iter()
            .find(|m| (m.start..m.end).contains(&addr))
            .expect("mapping");
        let mut info = ObjectInfo::load(&m.path, &m.build_id, true).expect("loads");
        let lines = info.resolve(&[addr - m.start + m.offset]).remove(0).0;
        assert!(
            lines.iter().any(|l| l.function.ends_with("probe_function")),
            "{lines:?}"
        );
        assert!(lines
            .iter()
            .any(|l| l.filename.ends_with("debuginfo.rs") && l.line > 0));
    }
}

#[cfg(test)]
mod demangle_tests {
    #[test]
    fn names_as_pprof_shows_them() {
        assert_eq!(super::demangle("_Z12make_widgetsv"), "make_widgets");
        assert_eq!(
            super::demangle("_ZNSt12_Vector_baseIiSaIiEE11_M_allocateEm"),
            "std::_Vector_base<int, std::allocator<int> >::_M_allocate"
        );
        assert_eq!(super::demangle("plain_c_function"), "plain_c_function");
    }
}

/// The link-time address ranges [start, end) of the named symbols in `path`'s symbol
/// table, in the order asked (None for a name not there, or without a size).
pub fn symbol_ranges(path: &str, names: &[&str]) -> Vec<Option<(u64, u64)>> {
    let mut out = vec![None; names.len()];
    let Some(image) = Image::map(path) else {
        return out;
    };
    let Ok(file) = object::File::parse(image.bytes()) else {
        return out;
    };
    let Some(table) = file.symbol_table() else {
        return out;
    };
    for sym in table.symbols() {
        let Ok(name) = sym.name() else { continue };
        if let Some(i) = names.iter().position(|&n| n == name) {
            if out[i].is_none() && sym.size() > 0 {
                out[i] = Some((sym.address(), sym.address() + sym.size()));
                if out.iter().all(Option::is_some) {
                    break; // Go's runtime symbols come early in its table
                }
            }
        }
    }
    out
}
