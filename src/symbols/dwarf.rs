//! Files, lines and inlined calls from an object's own DWARF, parsed only for the units
//! the addresses fall in (see `debuginfo`).
#![allow(unsafe_code)]

use object::{Object, ObjectSection};

use super::image::*;
use std::borrow::Cow;

/// The bytes of a DWARF section of `file` in place, or decompressed once into `owned`
/// (kept by section name).
pub(super) fn dwarf_section(
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

pub(super) fn endian(file: &object::File<'_>) -> gimli::RunTimeEndian {
    if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    }
}

/// The whole length of the unit whose header starts at `at` in `.debug_info`.
pub(super) fn unit_length(info: &[u8], at: usize) -> Option<usize> {
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
pub(super) fn load_dwarf(
    file: &object::File<'static>,
    owned: &mut Vec<(String, Box<[u8]>)>,
    unit: Option<usize>,
) -> Option<addr2line::Context<Reader>> {
    addr2line::Context::from_dwarf(dwarf_in_place(file, owned, unit)?).ok()
}

/// The DWARF sections of `file`, in place (`.debug_info` cut to the unit at `unit`).
pub(super) fn dwarf_in_place(
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
pub(super) struct Dwarf {
    /// (start, end, unit offset in .debug_info), by start.
    pub(super) aranges: Vec<(u64, u64, usize)>,
    pub(super) units: std::collections::HashMap<usize, Option<addr2line::Context<Reader>>>,
    pub(super) whole: Option<Option<addr2line::Context<Reader>>>,
}

/// Each unit's address ranges, as (start, end, unit offset in .debug_info), for an object
/// without `.debug_aranges`: from its root entry (DW_AT_low_pc and DW_AT_high_pc, or
/// DW_AT_ranges), or where it has none, from its line program's sequences (as addr2line
/// does; a unit of data only has neither). A unit at a time, nothing kept but the ranges;
/// the pages read are given back (`give_back`) every few units.
pub(super) fn unit_ranges(
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
    pub(super) fn new(
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

    pub(super) fn context_for(
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
