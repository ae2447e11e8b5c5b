//! Symbols and line tables of one object file (ELF), loaded once and kept.
//!
//! Why not backtrace's symbolizer: it loads the separate debug file of every object
//! (/usr/lib/debug/.build-id/…) and decompresses all of its DWARF; for glibc with libc6-dbg
//! that raised a small program's peak RSS by 36 MB at exit. Here:
//! - function names come from the object's own `.symtab`, else from the `.symtab` of its
//!   separate debug file (found by build ID; reading a symbol table needs no
//!   decompression), else from `.dynsym`;
//! - files, lines and inlined calls come from the DWARF in the object itself (what
//!   `cc -g` produces), never from a separate debug file;
//! - files are read through a temporary read-only mapping, and only what is kept (symbols,
//!   DWARF sections) is copied out; the kernel's vDSO, which has no file, is read in memory.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, ObjectSymbolTable};
use rprof_profile::LineInfo;

type Reader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

struct Symbol {
    start: u64,
    end: u64,
    name: String,
    global: bool,
}

pub struct ObjectInfo {
    /// PT_LOAD segments: (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
    symbols: Vec<Symbol>,
    dwarf: Option<addr2line::Context<Reader>>,
}

/// A read-only private mapping of a whole file, unmapped on drop.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn open(path: &str) -> Option<Mapped> {
        let file = std::fs::File::open(path).ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: maps `len` bytes of an open file read-only; the fd may close afterwards.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then(|| Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// The function symbols of `file`; of several names for one address, a global one wins,
/// and among those one starting with `preferred` (the vDSO's `__vdso_` names, so that its
/// functions are not taken for glibc's wrappers of the same name).
fn text_symbols(file: &object::File<'_>, dynamic: bool, preferred: &str) -> Vec<Symbol> {
    let syms: Vec<object::Symbol<'_, '_>> = if dynamic {
        file.dynamic_symbols().collect()
    } else {
        file.symbols().collect()
    };
    let mut out: Vec<Symbol> = syms
        .iter()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
        .filter_map(|s| {
            Some(Symbol {
                start: s.address(),
                end: s.address() + s.size().max(1),
                // .symtab names of versioned symbols carry "@@GLIBC_2.34"; pprof wants the name.
                name: s.name().ok()?.split('@').next()?.to_owned(),
                global: s.is_global(),
            })
        })
        .collect();
    // Of several names for one address (glibc has many aliases), the global one wins.
    out.sort_by_key(|s| {
        let preferred = !preferred.is_empty() && s.name.starts_with(preferred);
        (s.start, !s.global, !preferred, std::cmp::Reverse(s.end))
    });
    out.dedup_by_key(|s| s.start);
    out
}

/// Names for the PLT entries of `file`, `name@plt` as objdump and perf give them: each
/// entry is found by the `jmp *GOT(%rip)` it holds, and named after the symbol whose GOT
/// slot that is (a JUMP_SLOT or GLOB_DAT relocation). Without them a hot loop calling a
/// shared library leaves unnamed addresses in the program's mapping, and `go tool pprof`
/// then symbolizes the whole mapping again, worse.
///
/// A slot filled by an IRELATIVE relocation (an IFUNC inside the object itself, as libm's
/// `cos`) is named after the function at its resolver's address, from `named`.
fn plt_symbols(file: &object::File<'_>, named: &[Symbol]) -> Vec<Symbol> {
    let Some(dynsyms) = file.dynamic_symbol_table() else {
        return Vec::new();
    };
    let mut slots = std::collections::HashMap::new();
    for (got, reloc) in file.dynamic_relocations().into_iter().flatten() {
        if reloc.target() == object::RelocationTarget::Absolute && reloc.addend() > 0 {
            let at = reloc.addend() as u64;
            let i = named.partition_point(|s| s.start <= at);
            if let Some(s) = i
                .checked_sub(1)
                .map(|i| &named[i])
                .filter(|s| s.start == at)
            {
                slots.insert(got, s.name.clone());
            }
            continue;
        }
        if let object::RelocationTarget::Symbol(i) = reloc.target() {
            if let Some(name) = dynsyms
                .symbol_by_index(i)
                .ok()
                .and_then(|s| {
                    s.name()
                        .ok()
                        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
                })
                .filter(|n| !n.is_empty())
            {
                slots.insert(got, name);
            }
        }
    }
    let mut out = Vec::new();
    for section in file.sections() {
        let Ok(name) = section.name() else {
            continue;
        };
        let entry: u64 = match name {
            ".plt" | ".plt.sec" => 16,
            ".plt.got" => {
                // 8-byte entries, or 16 with an endbr64 first (IBT).
                let data = section.data().unwrap_or_default();
                if data.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) {
                    16
                } else {
                    8
                }
            }
            _ => continue,
        };
        let (Ok(data), base) = (section.data(), section.address()) else {
            continue;
        };
        for start in (0..data.len() as u64).step_by(entry as usize) {
            let end = (start + entry).min(data.len() as u64);
            let bytes = &data[start as usize..end as usize];
            let target = bytes.windows(6).enumerate().find_map(|(i, w)| {
                (w[0] == 0xff && w[1] == 0x25).then(|| {
                    let rel = i32::from_le_bytes([w[2], w[3], w[4], w[5]]);
                    (base + start + i as u64 + 6).wrapping_add(rel as i64 as u64)
                })
            });
            if let Some(name) = target.and_then(|t| slots.get(&t)) {
                out.push(Symbol {
                    start: base + start,
                    end: base + end,
                    name: format!("{name}@plt"),
                    global: false,
                });
            }
        }
    }
    out
}

fn load_dwarf(file: &object::File<'_>) -> Option<addr2line::Context<Reader>> {
    file.section_by_name(".debug_info")?;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
        let data: Cow<'_, [u8]> = file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[]));
        Ok(gimli::EndianArcSlice::new(Arc::from(&*data), endian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    addr2line::Context::from_dwarf(dwarf).ok()
}

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

impl ObjectInfo {
    /// Loads what symbolizing addresses in `path` needs (without its DWARF unless
    /// `with_lines`); None if it cannot be read.
    pub fn load(path: &str, build_id: &str, with_lines: bool) -> Option<ObjectInfo> {
        let map;
        let bytes = if path == "[vdso]" {
            crate::maps::vdso_image()?
        } else {
            map = Mapped::open(path)?;
            map.bytes()
        };
        let file = object::File::parse(bytes).ok()?;
        let segments = file
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (off, size, s.address())
            })
            .collect();
        let preferred = if path == "[vdso]" { "__vdso_" } else { "" };
        let mut symbols = text_symbols(&file, false, preferred);
        if symbols.is_empty() {
            if let Some(debug) = debug_file(build_id).and_then(|p| Mapped::open(&p)) {
                if let Ok(dfile) = object::File::parse(debug.bytes()) {
                    symbols = text_symbols(&dfile, false, preferred);
                }
            }
        }
        if symbols.is_empty() {
            symbols = text_symbols(&file, true, preferred);
        }
        let plt = plt_symbols(&file, &symbols);
        if !plt.is_empty() {
            symbols.extend(plt);
            symbols.sort_by_key(|s| s.start);
        }
        let dwarf = if with_lines { load_dwarf(&file) } else { None };
        Some(ObjectInfo {
            segments,
            symbols,
            dwarf,
        })
    }

    /// The lines at a file offset of the object, innermost inlined call first.
    pub fn lines(&self, file_offset: u64) -> Vec<LineInfo> {
        let Some(svma) = self
            .segments
            .iter()
            .find(|&&(off, size, _)| (off..off + size).contains(&file_offset))
            .map(|&(off, _, vaddr)| file_offset - off + vaddr)
        else {
            return Vec::new();
        };
        let symbol = self.symbol(svma);
        let mut out = Vec::new();
        if let Some(ctx) = &self.dwarf {
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

    /// How far a file offset of the object lies into the function symbol containing it
    /// (Go's `pc - entry` in its text profiles).
    pub fn symbol_offset(&self, file_offset: u64) -> Option<u64> {
        let svma = self
            .segments
            .iter()
            .find(|&&(off, size, _)| (off..off + size).contains(&file_offset))
            .map(|&(off, _, vaddr)| file_offset - off + vaddr)?;
        let i = self.symbols.partition_point(|s| s.start <= svma);
        let s = self.symbols.get(i.checked_sub(1)?)?;
        (svma < s.end).then(|| svma - s.start)
    }

    fn symbol(&self, svma: u64) -> Option<&str> {
        let i = self.symbols.partition_point(|s| s.start <= svma);
        let s = self.symbols.get(i.checked_sub(1)?)?;
        (svma < s.end).then_some(s.name.as_str())
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
        let maps = crate::maps::executable_mappings();
        let addr = probe_function as *const () as u64;
        let m = maps
            .iter()
            .find(|m| (m.start..m.end).contains(&addr))
            .expect("mapping");
        let info = ObjectInfo::load(&m.path, &m.build_id, true).expect("loads");
        let lines = info.lines(addr - m.start + m.offset);
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
