//! Function names from an ELF symbol table (`.symtab`, `.dynsym`) and the PLT, read in
//! place a chunk at a time (see `debuginfo`).
#![allow(unsafe_code)]

use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable};

use super::image::*;

/// An ELF64 symbol table in an image: its entries and its string table (file ranges).
#[derive(Clone)]
pub(super) struct SymbolTable {
    /// In the separate debug file rather than the object.
    pub(super) in_debug_file: bool,
    pub(super) entries: std::ops::Range<usize>,
    pub(super) strings: std::ops::Range<usize>,
}

pub(super) const SYM_SIZE: usize = 24;
pub(super) const STT_FUNC: u8 = 2;
pub(super) const STT_GNU_IFUNC: u8 = 10;
pub(super) const STB_LOCAL: u8 = 0;

/// The best symbol found so far for one address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Hit {
    /// Compared in this order: the nearest start, then a global name, then one with the
    /// preferred prefix, then the longest symbol.
    pub(super) start: u64,
    pub(super) global: bool,
    pub(super) preferred: bool,
    pub(super) end: u64,
    pub(super) name: u32,
}

/// The entries and strings of the section `name` and its linked string table, if the
/// file has them (ELF64 little-endian only).
pub(super) fn symbol_table(
    file: &object::File<'_>,
    name: &str,
    in_debug_file: bool,
) -> Option<SymbolTable> {
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
pub(super) fn scan(
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
pub(super) fn name_at(strings: &[u8], offset: u32) -> Option<&str> {
    let rest = strings.get(offset as usize..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&rest[..end]).ok()?;
    name.split('@').next().filter(|n| !n.is_empty())
}

/// A named PLT entry.
pub(super) struct PltEntry {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) name: String,
}

/// The PLT entries of `file`, `name@plt` as objdump and perf give them: each entry is
/// found by the `jmp *GOT(%rip)` it holds, and named after the symbol whose GOT slot that
/// is (a JUMP_SLOT or GLOB_DAT relocation). Without them a hot loop calling a shared
/// library leaves unnamed addresses in the program's mapping, and `go tool pprof` then
/// symbolizes the whole mapping again, worse.
///
/// A slot filled by an IRELATIVE relocation (an IFUNC inside the object itself, as libm's
/// `cos`) is named after the function at its resolver's address, by `name_of`.
pub(super) fn plt_entries(
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
pub(super) fn plt_ranges(file: &object::File<'_>) -> Vec<(u64, u64)> {
    file.sections()
        .filter(|s| matches!(s.name(), Ok(".plt" | ".plt.sec" | ".plt.got")))
        .map(|s| (s.address(), s.address() + s.size()))
        .collect()
}
