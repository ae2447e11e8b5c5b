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

type Reader = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// The bytes of an object file: a read-only private mapping of the whole file (unmapped on
/// drop), or the vDSO in memory.
struct Image {
    ptr: *const u8,
    len: usize,
    mapped: bool,
}

impl Image {
    fn map(path: &str) -> Option<Image> {
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
        (ptr != libc::MAP_FAILED).then(|| Image {
            ptr: ptr as *const u8,
            len,
            mapped: true,
        })
    }

    fn vdso() -> Option<Image> {
        let bytes = crate::symbols::maps::vdso_image()?;
        Some(Image {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
            mapped: false,
        })
    }

    /// The file's bytes. The `'static` is a promise kept by `ObjectInfo`: what borrows
    /// them (the parsed DWARF) is dropped before the image.
    fn bytes(&self) -> &'static [u8] {
        // SAFETY: `len` readable bytes at `ptr`, mapped until `self` is dropped (or the
        // vDSO, never unmapped).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Gives back the pages wholly inside `range` (read once, not needed soon): they leave
    /// the RSS and are read from the file again if touched.
    fn release(&self, range: std::ops::Range<usize>) {
        let page = 4096;
        let (start, end) = (
            (range.start + page - 1) & !(page - 1),
            range.end & !(page - 1),
        );
        if !self.mapped || start >= end || end > self.len {
            return;
        }
        // SAFETY: a page-aligned span inside our own read-only private mapping of a file;
        // MADV_DONTNEED only drops clean pages, which are read from the file again.
        unsafe {
            libc::madvise(
                self.ptr.add(start) as *mut libc::c_void,
                end - start,
                libc::MADV_DONTNEED,
            )
        };
    }
}

// SAFETY: the image is read-only memory owned by this value; any thread may read it.
unsafe impl Send for Image {}

impl Drop for Image {
    fn drop(&mut self) {
        if self.mapped {
            // SAFETY: unmaps exactly the mapping made in `map`.
            unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
        }
    }
}

/// An ELF64 symbol table in an image: its entries and its string table (file ranges).
#[derive(Clone)]
struct SymbolTable {
    /// In the separate debug file rather than the object.
    in_debug_file: bool,
    entries: std::ops::Range<usize>,
    strings: std::ops::Range<usize>,
}

const SYM_SIZE: usize = 24;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;
const STB_LOCAL: u8 = 0;

/// The best symbol found so far for one address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Hit {
    /// Compared in this order: the nearest start, then a global name, then one with the
    /// preferred prefix, then the longest symbol.
    start: u64,
    global: bool,
    preferred: bool,
    end: u64,
    name: u32,
}

/// The entries and strings of the section `name` and its linked string table, if the
/// file has them (ELF64 little-endian only).
fn symbol_table(file: &object::File<'_>, name: &str, in_debug_file: bool) -> Option<SymbolTable> {
    if !file.is_little_endian() || !file.is_64() {
        return None;
    }
    let section = file.section_by_name(name)?;
    let strings = match name {
        ".dynsym" => file.section_by_name(".dynstr")?,
        _ => file.section_by_name(".strtab")?,
    };
    let range = |s: &object::Section<'_, '_>| {
        let (off, size) = s.file_range()?;
        let start = usize::try_from(off).ok()?;
        Some(start..start.checked_add(usize::try_from(size).ok()?)?)
    };
    Some(SymbolTable {
        in_debug_file,
        entries: range(&section)?,
        strings: range(&strings)?,
    })
}

/// One pass over the function symbols of `table` for the addresses `svmas` (sorted,
/// distinct): for each, the symbol containing it, nearest first. Returns how many function
/// symbols the table has and the hits.
fn scan(
    image: &Image,
    table: &SymbolTable,
    svmas: &[u64],
    preferred: &str,
) -> (usize, Vec<Option<Hit>>) {
    let bytes = image.bytes();
    let mut hits = vec![None; svmas.len()];
    let mut functions = 0;
    let (Some(&lo), Some(&hi)) = (svmas.first(), svmas.last()) else {
        return (0, hits);
    };
    let Some(entries) = bytes.get(table.entries.clone()) else {
        return (0, hits);
    };
    let strings = bytes.get(table.strings.clone()).unwrap_or_default();
    // Which pages of [lo, hi] hold an address (4 KiB, coarser over a range wider than 4 GiB):
    // most symbols are then passed over after one bit test, and only those on a marked
    // page are looked up among the addresses.
    let mut shift = 12;
    while (hi - lo) >> shift >= 1 << 20 {
        shift += 1;
    }
    let page = |a: u64| ((a - lo) >> shift) as usize;
    let mut pages = vec![0u64; page(hi) / 64 + 1];
    for &a in svmas {
        pages[page(a) / 64] |= 1 << (page(a) % 64);
    }
    let marked = |start: u64, end: u64| {
        let (mut p, last) = (page(start.max(lo)), page((end - 1).min(hi)));
        loop {
            if pages[p / 64] >> (p % 64) & 1 != 0 {
                return true;
            }
            if p >= last {
                return false;
            }
            p += 1;
        }
    };
    // 43,690 entries (about 1 MB) a chunk.
    let chunk = SYM_SIZE * 43_690;
    for (c, part) in entries.chunks(chunk).enumerate() {
        // Whole entries as arrays: no bounds check in the loop, which runs once per symbol
        // of the object (hundreds of thousands in a large one).
        let (whole, _) = part.as_chunks::<SYM_SIZE>();
        for e in whole {
            let info = e[4];
            let kind = info & 0xf;
            if kind != STT_FUNC && kind != STT_GNU_IFUNC {
                continue;
            }
            let word = |at: usize| u64::from_le_bytes(e[at..at + 8].try_into().unwrap_or([0; 8]));
            let (start, size) = (word(8), word(16));
            if start == 0 {
                continue;
            }
            functions += 1;
            let end = start.saturating_add(size.max(1));
            if end <= lo || start > hi || !marked(start, end) {
                continue;
            }
            let name = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let hit = Hit {
                start,
                global: info >> 4 != STB_LOCAL,
                preferred: !preferred.is_empty()
                    && name_at(strings, name).is_some_and(|n| n.starts_with(preferred)),
                end,
                name,
            };
            let first = svmas.partition_point(|&a| a < start);
            for (i, _) in svmas[first..]
                .iter()
                .enumerate()
                .take_while(|(_, &a)| a < end)
            {
                let best = &mut hits[first + i];
                if best.is_none_or(|b| hit > b) {
                    *best = Some(hit);
                }
            }
        }
        image
            .release(table.entries.start + c * chunk..table.entries.start + c * chunk + part.len());
    }
    (functions, hits)
}

/// The NUL-terminated name at `offset` in a string table, without a version suffix
/// (.symtab names of versioned symbols carry "@@GLIBC_2.34"; pprof wants the name).
fn name_at(strings: &[u8], offset: u32) -> Option<&str> {
    let rest = strings.get(offset as usize..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&rest[..end]).ok()?;
    name.split('@').next().filter(|n| !n.is_empty())
}

/// A named PLT entry.
struct PltEntry {
    start: u64,
    end: u64,
    name: String,
}

/// The PLT entries of `file`, `name@plt` as objdump and perf give them: each entry is
/// found by the `jmp *GOT(%rip)` it holds, and named after the symbol whose GOT slot that
/// is (a JUMP_SLOT or GLOB_DAT relocation). Without them a hot loop calling a shared
/// library leaves unnamed addresses in the program's mapping, and `go tool pprof` then
/// symbolizes the whole mapping again, worse.
///
/// A slot filled by an IRELATIVE relocation (an IFUNC inside the object itself, as libm's
/// `cos`) is named after the function at its resolver's address, by `name_of`.
fn plt_entries(
    file: &object::File<'_>,
    name_of: impl FnOnce(&[u64]) -> Vec<Option<String>>,
) -> Vec<PltEntry> {
    let Some(dynsyms) = file.dynamic_symbol_table() else {
        return Vec::new();
    };
    let mut slots = std::collections::HashMap::new();
    let mut resolvers = Vec::new();
    for (got, reloc) in file.dynamic_relocations().into_iter().flatten() {
        if reloc.target() == object::RelocationTarget::Absolute && reloc.addend() > 0 {
            resolvers.push((got, reloc.addend() as u64));
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
    if !resolvers.is_empty() {
        let mut at: Vec<u64> = resolvers.iter().map(|&(_, a)| a).collect();
        at.sort_unstable();
        at.dedup();
        let names = name_of(&at);
        for (got, a) in resolvers {
            if let Ok(i) = at.binary_search(&a) {
                if let Some(Some(name)) = names.get(i) {
                    slots.insert(got, name.clone());
                }
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
                out.push(PltEntry {
                    start: base + start,
                    end: base + end,
                    name: format!("{name}@plt"),
                });
            }
        }
    }
    out.sort_by_key(|e| e.start);
    out
}

/// The PLT sections' address ranges.
fn plt_ranges(file: &object::File<'_>) -> Vec<(u64, u64)> {
    file.sections()
        .filter(|s| matches!(s.name(), Ok(".plt" | ".plt.sec" | ".plt.got")))
        .map(|s| (s.address(), s.address() + s.size()))
        .collect()
}

/// The bytes of a DWARF section of `file` in place, or decompressed once into `owned`
/// (kept by section name).
fn dwarf_section(
    file: &object::File<'static>,
    name: &str,
    owned: &mut Vec<(String, Box<[u8]>)>,
) -> &'static [u8] {
    let as_static = |b: &[u8]| -> &'static [u8] {
        // SAFETY: the box is kept in `owned` (never mutated or removed, its heap buffer
        // does not move) for as long as what borrows it (see `ObjectInfo`).
        unsafe { std::slice::from_raw_parts(b.as_ptr(), b.len()) }
    };
    if let Some((_, b)) = owned.iter().find(|(n, _)| n == name) {
        return as_static(b);
    }
    match file
        .section_by_name(name)
        .and_then(|s| s.uncompressed_data().ok())
    {
        Some(Cow::Borrowed(b)) => b,
        Some(Cow::Owned(v)) => {
            let b: Box<[u8]> = v.into_boxed_slice();
            let data = as_static(&b);
            owned.push((name.to_owned(), b));
            data
        }
        None => &[],
    }
}

fn endian(file: &object::File<'_>) -> gimli::RunTimeEndian {
    if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    }
}

/// The whole length of the unit whose header starts at `at` in `.debug_info`.
fn unit_length(info: &[u8], at: usize) -> Option<usize> {
    let word = |i: usize| Some(u32::from_le_bytes(info.get(i..i + 4)?.try_into().ok()?));
    match word(at)? {
        0xffff_ffff => {
            let n = u64::from_le_bytes(info.get(at + 4..at + 12)?.try_into().ok()?);
            usize::try_from(n).ok()?.checked_add(12)
        }
        n if n < 0xffff_fff0 => (n as usize).checked_add(4),
        _ => None,
    }
}

/// A context over the DWARF of `file`, in place: of the one unit at `unit` in
/// `.debug_info` (addr2line then parses that unit only), or of all of them.
fn load_dwarf(
    file: &object::File<'static>,
    owned: &mut Vec<(String, Box<[u8]>)>,
    unit: Option<usize>,
) -> Option<addr2line::Context<Reader>> {
    addr2line::Context::from_dwarf(dwarf_in_place(file, owned, unit)?).ok()
}

/// The DWARF sections of `file`, in place (`.debug_info` cut to the unit at `unit`).
fn dwarf_in_place(
    file: &object::File<'static>,
    owned: &mut Vec<(String, Box<[u8]>)>,
    unit: Option<usize>,
) -> Option<gimli::Dwarf<Reader>> {
    let endian = endian(file);
    let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
        let mut data = dwarf_section(file, id.name(), owned);
        if let (gimli::SectionId::DebugInfo, Some(at)) = (id, unit) {
            data = unit_length(data, at)
                .and_then(|n| data.get(at..at.checked_add(n)?))
                .unwrap_or_default();
        }
        Ok(gimli::EndianSlice::new(data, endian))
    };
    gimli::Dwarf::load(load).ok()
}

/// The DWARF of an object, parsed a unit at a time: `.debug_aranges` says which unit
/// holds an address, and only the units addresses fall in are parsed (addr2line parses
/// every unit's header, abbreviations and file table up front: 14 MB for libpython).
/// Without aranges (LLVM does not emit them by default), each unit's own ranges say it,
/// read a unit at a time (`unit_ranges`). Only an object whose units give no range at all
/// gets one context for all units.
struct Dwarf {
    /// (start, end, unit offset in .debug_info), by start.
    aranges: Vec<(u64, u64, usize)>,
    units: std::collections::HashMap<usize, Option<addr2line::Context<Reader>>>,
    whole: Option<Option<addr2line::Context<Reader>>>,
}

/// Each unit's address ranges, as (start, end, unit offset in .debug_info), for an object
/// without `.debug_aranges`: from its root entry (DW_AT_low_pc and DW_AT_high_pc, or
/// DW_AT_ranges), or where it has none, from its line program's sequences (as addr2line
/// does; a unit of data only has neither). A unit at a time, nothing kept but the ranges;
/// the pages read are given back (`give_back`) every few units.
fn unit_ranges(
    file: &object::File<'static>,
    owned: &mut Vec<(String, Box<[u8]>)>,
    give_back: &dyn Fn(),
) -> Vec<(u64, u64, usize)> {
    let Some(dwarf) = dwarf_in_place(file, owned, None) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut headers = dwarf.units();
    let mut n = 0usize;
    while let Ok(Some(header)) = headers.next() {
        n += 1;
        if n.is_multiple_of(8) {
            give_back();
        }
        let at = header.offset().0;
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let before = out.len();
        if let Ok(mut ranges) = dwarf.unit_ranges(&unit) {
            while let Ok(Some(r)) = ranges.next() {
                if r.begin < r.end {
                    out.push((r.begin, r.end, at));
                }
            }
        }
        if out.len() == before {
            if let Some(Ok((_, sequences))) = unit.line_program.clone().map(|p| p.sequences()) {
                out.extend(
                    sequences
                        .iter()
                        .filter(|q| q.start < q.end)
                        .map(|q| (q.start, q.end, at)),
                );
            }
        }
    }
    give_back();
    out
}

impl Dwarf {
    fn new(
        file: &object::File<'static>,
        owned: &mut Vec<(String, Box<[u8]>)>,
        give_back: &dyn Fn(),
    ) -> Option<Dwarf> {
        file.section_by_name(".debug_info")?;
        let data = dwarf_section(file, ".debug_aranges", owned);
        let mut aranges = Vec::new();
        let mut headers = gimli::DebugAranges::new(data, endian(file)).headers();
        while let Ok(Some(h)) = headers.next() {
            let unit = h.debug_info_offset().0;
            let mut entries = h.entries();
            while let Ok(Some(e)) = entries.next() {
                if e.length() > 0 {
                    aranges.push((e.address(), e.address().saturating_add(e.length()), unit));
                }
            }
        }
        if aranges.is_empty() {
            aranges = unit_ranges(file, owned, give_back);
        }
        aranges.sort_unstable();
        Some(Dwarf {
            aranges,
            units: std::collections::HashMap::new(),
            whole: None,
        })
    }

    fn context_for(
        &mut self,
        svma: u64,
        file: &object::File<'static>,
        owned: &mut Vec<(String, Box<[u8]>)>,
    ) -> Option<&addr2line::Context<Reader>> {
        let i = self.aranges.partition_point(|r| r.0 <= svma);
        let unit = i
            .checked_sub(1)
            .map(|i| self.aranges[i])
            .filter(|r| svma < r.1)
            .map(|r| r.2);
        match unit {
            Some(at) => self
                .units
                .entry(at)
                .or_insert_with(|| load_dwarf(file, owned, Some(at)))
                .as_ref(),
            // Aranges cover every unit with code where the compiler emits them; an address
            // outside them (start-up files, assembly) has no lines to find.
            None if !self.aranges.is_empty() => None,
            None => self
                .whole
                .get_or_insert_with(|| load_dwarf(file, owned, None))
                .as_ref(),
        }
    }
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
        let maps = crate::symbols::maps::executable_mappings();
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
