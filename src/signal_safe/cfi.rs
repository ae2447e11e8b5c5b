//! DWARF call-frame information for the unwinder: bounds-checked reads of a loaded
//! object's `.eh_frame_hdr` and `.eh_frame`, CIE/FDE parsing, the call-frame program and
//! the DWARF expressions CFI uses. Async-signal-safe: no allocation, no lock; every read
//! is checked against the object's span.
#![allow(unsafe_code)]

use super::frame::{Regs, StackBounds, NREGS};

/// A loaded object: its mapped span and its `.eh_frame_hdr`.
#[derive(Clone, Copy)]
pub(super) struct Object {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) eh_frame_hdr: u64,
}

/// A cursor over the memory of one loaded object; every read is checked against its span.
#[derive(Clone, Copy)]
pub(super) struct Cursor {
    pub(super) pos: u64,
    pub(super) end: u64,
}

impl Cursor {
    pub(super) fn in_object(obj: &Object, pos: u64) -> Self {
        Cursor { pos, end: obj.end }
    }

    pub(super) fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let next = self.pos.checked_add(N as u64)?;
        if next > self.end {
            return None;
        }
        // SAFETY: [pos, pos+N) lies inside a loaded object (checked above against its span).
        let v = unsafe { std::ptr::read_unaligned(self.pos as *const [u8; N]) };
        self.pos = next;
        Some(v)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        self.bytes::<1>().map(|b| b[0])
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        self.bytes().map(u16::from_le_bytes)
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_le_bytes)
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_le_bytes)
    }
    pub(super) fn uleb(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    pub(super) fn sleb(&mut self) -> Option<i64> {
        let mut v = 0i64;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            v |= i64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Some(v);
            }
            if shift >= 64 {
                return None;
            }
        }
    }

    /// Reads a pointer in DW_EH_PE encoding `enc`; `datarel` is the base for DW_EH_PE_datarel.
    pub(super) fn pointer(&mut self, enc: u8, datarel: u64) -> Option<u64> {
        if enc == 0xff {
            return None;
        }
        let field = self.pos;
        let raw = match enc & 0x0f {
            0x00 => self.u64()?,
            0x01 => self.uleb()?,
            0x02 => u64::from(self.u16()?),
            0x03 => u64::from(self.u32()?),
            0x04 => self.u64()?,
            0x09 => self.sleb()? as u64,
            0x0a => self.u16()? as i16 as i64 as u64,
            0x0b => self.u32()? as i32 as i64 as u64,
            0x0c => self.u64()?,
            _ => return None,
        };
        let base = match enc & 0x70 {
            0x00 => 0,
            0x10 => field,
            0x30 => datarel,
            _ => return None,
        };
        if enc & 0x80 != 0 {
            return None; // indirect pointers are only used for personalities, which we skip
        }
        Some(base.wrapping_add(raw))
    }
}

/// Where a register's caller value is found.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Rule {
    Same,
    Undefined,
    Offset(i64),
    ValOffset(i64),
    Register(u16),
    Expr(u64, u64),
    ValExpr(u64, u64),
}

#[derive(Clone, Copy)]
pub(super) enum CfaRule {
    RegOffset(u16, i64),
    Expr(u64, u64),
}

#[derive(Clone, Copy)]
pub(super) struct RowState {
    pub(super) cfa: CfaRule,
    pub(super) regs: [Rule; NREGS],
}

/// What a CIE says about its FDEs.
pub(super) struct Cie {
    pub(super) code_align: u64,
    pub(super) data_align: i64,
    pub(super) ra_reg: u64,
    pub(super) fde_enc: u8,
    pub(super) has_aug_data: bool,
    pub(super) instructions: Cursor,
}

/// Async-signal-safe. Finds the FDE covering `pc` via the `.eh_frame_hdr` search table and
/// returns its CIE, its start address and its instructions.
pub(super) fn find_fde(obj: &Object, pc: u64) -> Option<(Cie, u64, Cursor)> {
    let hdr = obj.eh_frame_hdr;
    let mut c = Cursor::in_object(obj, hdr);
    let [version, eh_frame_ptr_enc, fde_count_enc, table_enc] = c.bytes::<4>()?;
    if version != 1 {
        return None;
    }
    c.pointer(eh_frame_ptr_enc, hdr)?;
    let count = c.pointer(fde_count_enc, hdr)?;
    if table_enc != 0x3b || count == 0 {
        return None; // GNU ld and lld always emit datarel|sdata4; anything else is unexpected
    }
    let table = c.pos;
    let entry = |i: u64| -> Option<(u64, u64)> {
        let mut e = Cursor::in_object(obj, table.checked_add(i.checked_mul(8)?)?);
        let start = hdr.wrapping_add(e.u32()? as i32 as i64 as u64);
        let fde = hdr.wrapping_add(e.u32()? as i32 as i64 as u64);
        Some((start, fde))
    };
    // Last entry whose start is <= pc.
    let (mut lo, mut hi) = (0u64, count);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if entry(mid)?.0 <= pc {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (start, fde) = entry(lo)?;
    if start > pc {
        return None;
    }
    let (cie, pc_begin, pc_range, insns) = parse_fde(obj, fde)?;
    if pc < pc_begin || pc >= pc_begin.wrapping_add(pc_range) {
        return None;
    }
    Some((cie, pc_begin, insns))
}

/// Reads a CIE/FDE length field; returns (start of contents, end of entry).
pub(super) fn entry_bounds(c: &mut Cursor) -> Option<(u64, u64)> {
    let len = c.u32()?;
    let len = if len == 0xffff_ffff {
        c.u64()?
    } else {
        u64::from(len)
    };
    if len == 0 {
        return None;
    }
    Some((c.pos, c.pos.checked_add(len)?))
}

pub(super) fn parse_fde(obj: &Object, fde: u64) -> Option<(Cie, u64, u64, Cursor)> {
    let mut c = Cursor::in_object(obj, fde);
    let (_, end) = entry_bounds(&mut c)?;
    let cie_ptr_field = c.pos;
    let cie_offset = c.u32()?;
    if cie_offset == 0 {
        return None; // that is a CIE, not an FDE
    }
    let cie = parse_cie(obj, cie_ptr_field.wrapping_sub(u64::from(cie_offset)))?;
    let pc_begin = c.pointer(cie.fde_enc, 0)?;
    let pc_range = c.pointer(cie.fde_enc & 0x0f, 0)?;
    if cie.has_aug_data {
        let n = c.uleb()?;
        c.pos = c.pos.checked_add(n)?;
    }
    if c.pos > end || end > obj.end {
        return None;
    }
    Some((cie, pc_begin, pc_range, Cursor { pos: c.pos, end }))
}

pub(super) fn parse_cie(obj: &Object, at: u64) -> Option<Cie> {
    let mut c = Cursor::in_object(obj, at);
    let (_, end) = entry_bounds(&mut c)?;
    if c.u32()? != 0 {
        return None;
    }
    let version = c.u8()?;
    let mut aug = [0u8; 8];
    let mut n = 0;
    loop {
        let b = c.u8()?;
        if b == 0 {
            break;
        }
        *aug.get_mut(n)? = b;
        n += 1;
    }
    let aug = aug.get(..n)?;
    if aug.first().is_some_and(|&a| a != b'z') && !aug.is_empty() {
        return None; // pre-'z' augmentations ("eh") are long obsolete
    }
    let code_align = c.uleb()?;
    let data_align = c.sleb()?;
    let ra_reg = if version == 1 {
        u64::from(c.u8()?)
    } else {
        c.uleb()?
    };
    let mut fde_enc = 0u8;
    let has_aug_data = aug.first() == Some(&b'z');
    if has_aug_data {
        let len = c.uleb()?;
        let data_end = c.pos.checked_add(len)?;
        for &a in aug.get(1..)? {
            match a {
                b'R' => fde_enc = c.u8()?,
                b'L' => {
                    c.u8()?;
                }
                b'P' => {
                    let enc = c.u8()?;
                    // Skip the personality pointer without following it.
                    c.pointer(enc & 0x7f, 0)?;
                }
                b'S' | b'B' | b'G' => {}
                _ => break,
            }
        }
        c.pos = data_end;
    }
    if c.pos > end {
        return None;
    }
    Some(Cie {
        code_align,
        data_align,
        ra_reg,
        fde_enc,
        has_aug_data,
        instructions: Cursor { pos: c.pos, end },
    })
}

/// Runs a call-frame program until the row for `target` is reached.
pub(super) fn run_cfa_program(
    cie: &Cie,
    mut c: Cursor,
    mut loc: u64,
    target: u64,
    row: &mut RowState,
    initial: &RowState,
    saved: &mut [RowState; 4],
) -> Option<()> {
    let mut depth = 0usize;
    let reg = |r: u64| -> Option<usize> {
        let r = r as usize;
        (r < NREGS).then_some(r)
    };
    let da = cie.data_align;
    while c.pos < c.end {
        let op = c.u8()?;
        let (hi, lo) = (op & 0xc0, op & 0x3f);
        match hi {
            0x40 => {
                loc = loc.wrapping_add(u64::from(lo) * cie.code_align);
                if loc > target {
                    return Some(());
                }
                continue;
            }
            0x80 => {
                let off = c.uleb()? as i64 * da;
                if let Some(r) = reg(u64::from(lo)) {
                    row.regs[r] = Rule::Offset(off);
                }
                continue;
            }
            0xc0 => {
                if let Some(r) = reg(u64::from(lo)) {
                    row.regs[r] = initial.regs[r];
                }
                continue;
            }
            _ => {}
        }
        match op {
            0x00 => {}
            0x01 => {
                loc = c.pointer(cie.fde_enc, 0)?;
                if loc > target {
                    return Some(());
                }
            }
            0x02..=0x04 => {
                let delta = match op {
                    0x02 => u64::from(c.u8()?),
                    0x03 => u64::from(c.u16()?),
                    _ => u64::from(c.u32()?),
                };
                loc = loc.wrapping_add(delta * cie.code_align);
                if loc > target {
                    return Some(());
                }
            }
            0x05 | 0x11 | 0x14 | 0x15 | 0x2f => {
                let r = c.uleb()?;
                let off = match op {
                    0x05 | 0x14 => c.uleb()? as i64 * da,
                    0x2f => -(c.uleb()? as i64) * da,
                    _ => c.sleb()? * da,
                };
                if let Some(r) = reg(r) {
                    row.regs[r] = if op == 0x14 || op == 0x15 {
                        Rule::ValOffset(off)
                    } else {
                        Rule::Offset(off)
                    };
                }
            }
            0x06..=0x08 => {
                if let Some(r) = reg(c.uleb()?) {
                    row.regs[r] = match op {
                        0x06 => initial.regs[r],
                        0x07 => Rule::Undefined,
                        _ => Rule::Same,
                    };
                }
            }
            0x09 => {
                let (r, r2) = (c.uleb()?, c.uleb()?);
                if let Some(r) = reg(r) {
                    row.regs[r] = Rule::Register(r2 as u16);
                }
            }
            0x0a => {
                *saved.get_mut(depth)? = *row;
                depth += 1;
            }
            0x0b => {
                // The whole row, CFA rule included, as GCC's and LLVM's unwinders do.
                depth = depth.checked_sub(1)?;
                *row = *saved.get(depth)?;
            }
            0x0c | 0x12 => {
                let r = c.uleb()?;
                let off = if op == 0x0c {
                    c.uleb()? as i64
                } else {
                    c.sleb()? * da
                };
                row.cfa = CfaRule::RegOffset(r as u16, off);
            }
            0x0d => {
                let r = c.uleb()? as u16;
                if let CfaRule::RegOffset(_, off) = row.cfa {
                    row.cfa = CfaRule::RegOffset(r, off);
                } else {
                    row.cfa = CfaRule::RegOffset(r, 0);
                }
            }
            0x0e | 0x13 => {
                let off = if op == 0x0e {
                    c.uleb()? as i64
                } else {
                    c.sleb()? * da
                };
                if let CfaRule::RegOffset(r, _) = row.cfa {
                    row.cfa = CfaRule::RegOffset(r, off);
                } else {
                    return None;
                }
            }
            0x0f => {
                let len = c.uleb()?;
                row.cfa = CfaRule::Expr(c.pos, len);
                c.pos = c.pos.checked_add(len)?;
            }
            0x10 | 0x16 => {
                let r = c.uleb()?;
                let len = c.uleb()?;
                if let Some(r) = reg(r) {
                    row.regs[r] = if op == 0x10 {
                        Rule::Expr(c.pos, len)
                    } else {
                        Rule::ValExpr(c.pos, len)
                    };
                }
                c.pos = c.pos.checked_add(len)?;
            }
            0x2e => {
                c.uleb()?;
            }
            _ => return None,
        }
    }
    Some(())
}

/// Evaluates the subset of DWARF expressions that appear in CFI (GCC's PLT and stack
/// realignment rules, glibc's hand-written ones). Returns None for anything else.
pub(super) fn eval_expr(
    obj: &Object,
    at: u64,
    len: u64,
    regs: &Regs,
    stack: &StackBounds,
) -> Option<u64> {
    let mut c = Cursor {
        pos: at,
        end: at.checked_add(len)?.min(obj.end),
    };
    let mut st = [0u64; 16];
    let mut n = 0usize;
    macro_rules! push {
        ($v:expr) => {{
            *st.get_mut(n)? = $v;
            n += 1;
        }};
    }
    macro_rules! pop {
        () => {{
            n = n.checked_sub(1)?;
            *st.get(n)?
        }};
    }
    while c.pos < c.end {
        let op = c.u8()?;
        match op {
            0x30..=0x4f => push!(u64::from(op - 0x30)),
            0x70..=0x80 => {
                let off = c.sleb()?;
                let r = regs.0.get(usize::from(op - 0x70)).copied().flatten()?;
                push!(r.wrapping_add(off as u64));
            }
            0x06 => {
                let a = pop!();
                push!(stack.read_u64(a)?);
            }
            0x08 => push!(u64::from(c.u8()?)),
            0x09 => push!(c.u8()? as i8 as i64 as u64),
            0x0a => push!(u64::from(c.u16()?)),
            0x0b => push!(c.u16()? as i16 as i64 as u64),
            0x0c => push!(u64::from(c.u32()?)),
            0x0d => push!(c.u32()? as i32 as i64 as u64),
            0x0e | 0x0f => push!(c.u64()?),
            0x10 => push!(c.uleb()?),
            0x11 => push!(c.sleb()? as u64),
            0x12 => {
                let v = pop!();
                push!(v);
                push!(v);
            }
            0x13 => {
                let _ = pop!();
            }
            0x16 => {
                let (a, b) = (pop!(), pop!());
                push!(a);
                push!(b);
            }
            0x23 => {
                let v = pop!();
                push!(v.wrapping_add(c.uleb()?));
            }
            0x1a | 0x1c | 0x1e | 0x21 | 0x22 | 0x24 | 0x25 | 0x27 | 0x29..=0x2e => {
                let b = pop!();
                let a = pop!();
                push!(match op {
                    0x1a => a & b,
                    0x1c => a.wrapping_sub(b),
                    0x1e => a.wrapping_mul(b),
                    0x21 => a | b,
                    0x22 => a.wrapping_add(b),
                    0x24 => a.wrapping_shl(b as u32),
                    0x25 => a.wrapping_shr(b as u32),
                    0x27 => a ^ b,
                    0x29 => u64::from(a == b),
                    0x2a => u64::from(a as i64 >= b as i64),
                    0x2b => u64::from(a as i64 > b as i64),
                    0x2c => u64::from(a as i64 <= b as i64),
                    0x2d => u64::from((a as i64) < b as i64),
                    _ => u64::from(a != b),
                });
            }
            _ => return None,
        }
    }
    if n == 0 {
        return None;
    }
    Some(pop!())
}
