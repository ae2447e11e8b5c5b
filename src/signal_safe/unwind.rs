//! An x86_64 DWARF CFI unwinder that is safe to run inside a signal handler.
//!
//! Why not `_Unwind_Backtrace`: libgcc's unwinder reads memory without checking it is
//! mapped (it crashes on a garbage PC while probing for the sigreturn trampoline, pprof-rs
//! #75), and on older toolchains takes locks during FDE lookup. This one:
//! - finds the object containing a PC with glibc's `_dl_find_object` (glibc ≥ 2.35, documented
//!   async-signal-safe, lock-free), then the FDE by binary search in that object's
//!   `.eh_frame_hdr` table; every read of object data is bounds-checked against the object;
//! - reads the stack only inside `[sp, stack_top)` of the interrupted thread, which is mapped;
//! - executes the CIE/FDE call-frame program for the PC, including the DWARF expressions GCC
//!   emits for PLT entries and stack realignment, and steps through the kernel's signal frame
//!   (`__restore_rt`) by reading the saved `ucontext`;
//! - stops (never crashes) at anything it does not understand, keeping the frames so far.
//!
//! Objects unloaded while a handler walks them are excluded by [`UnloadFence`]: the dlclose
//! hook waits for running walks to finish and walks started during a dlclose keep only the leaf.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Deepest stack recorded; deeper stacks keep their innermost frames and are marked truncated.
pub const MAX_DEPTH: usize = 128;

const RA: usize = 16;
const RSP: usize = 7;
const NREGS: usize = 17;

/// Registers of an interrupted context, indexed by DWARF register number (0–15 the general
/// registers, 16 the return address / RIP). `None` is a value the unwinder does not know.
#[derive(Clone, Copy)]
pub struct Regs(pub [Option<u64>; NREGS]);

/// The readable span of the interrupted thread's stack.
#[derive(Clone, Copy)]
pub struct StackBounds {
    pub lo: u64,
    pub hi: u64,
}

impl StackBounds {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        if addr < self.lo || addr.checked_add(8)? > self.hi {
            return None;
        }
        // SAFETY: [lo, hi) lies within the thread's mapped stack (see module docs).
        Some(unsafe { std::ptr::read_unaligned(addr as *const u64) })
    }
}

/// glibc's `struct dl_find_object` for x86_64 (dlfcn.h), with room to spare.
#[repr(C)]
struct DlFindObject {
    flags: u64,
    map_start: *mut u8,
    map_end: *mut u8,
    link_map: *mut libc::c_void,
    eh_frame: *mut u8,
    reserved: [u64; 12],
}

type DlFindObjectFn = unsafe extern "C" fn(*mut libc::c_void, *mut DlFindObject) -> libc::c_int;

/// `_dl_find_object`, looked up at load; null where glibc is older than 2.35.
static DL_FIND_OBJECT: AtomicPtr<libc::c_void> = AtomicPtr::new(std::ptr::null_mut());

/// Looks up `_dl_find_object`. Not signal-safe; call once at load. Returns whether the
/// unwinder can go beyond the leaf frame on this system.
pub fn init() -> bool {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the global scope.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_dl_find_object".as_ptr()) };
    DL_FIND_OBJECT.store(f, Ordering::Release);
    !f.is_null()
}

/// Excludes stack walks from the window in which a dlclose may unmap an object.
pub struct UnloadFence {
    walking: AtomicU32,
    closing: AtomicU32,
}

pub static UNLOAD_FENCE: UnloadFence = UnloadFence {
    walking: AtomicU32::new(0),
    closing: AtomicU32::new(0),
};

impl UnloadFence {
    /// Async-signal-safe. Runs `walk` unless a dlclose is in progress, in which case returns None.
    fn enter<R>(&self, walk: impl FnOnce() -> R) -> Option<R> {
        self.walking.fetch_add(1, Ordering::SeqCst);
        let r = if self.closing.load(Ordering::SeqCst) == 0 {
            Some(walk())
        } else {
            None
        };
        self.walking.fetch_sub(1, Ordering::SeqCst);
        r
    }

    /// Called around the real dlclose: waits until no walk is running, and keeps new walks
    /// leaf-only until `end_close`. Walks never wait on anything, so this cannot deadlock.
    pub fn begin_close(&self) {
        self.closing.fetch_add(1, Ordering::SeqCst);
        while self.walking.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        // No walk runs now, so none writes the cache: forget rules of code about to go.
        rule_cache_clear();
    }

    pub fn end_close(&self) {
        self.closing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A loaded object: its mapped span and its `.eh_frame_hdr`.
#[derive(Clone, Copy)]
struct Object {
    end: u64,
    eh_frame_hdr: u64,
}

/// Async-signal-safe.
fn find_object(pc: u64) -> Option<Object> {
    let f = DL_FIND_OBJECT.load(Ordering::Acquire);
    if f.is_null() {
        return None;
    }
    // SAFETY: the pointer came from dlsym("_dl_find_object"), whose signature this is.
    let f: DlFindObjectFn = unsafe { std::mem::transmute(f) };
    let mut r = DlFindObject {
        flags: 0,
        map_start: std::ptr::null_mut(),
        map_end: std::ptr::null_mut(),
        link_map: std::ptr::null_mut(),
        eh_frame: std::ptr::null_mut(),
        reserved: [0; 12],
    };
    // SAFETY: _dl_find_object only writes into `r`; it is async-signal-safe (glibc manual).
    if unsafe { f(pc as *mut libc::c_void, &mut r) } != 0 || r.eh_frame.is_null() {
        return None;
    }
    Some(Object {
        end: r.map_end as u64,
        eh_frame_hdr: r.eh_frame as u64,
    })
}

/// A cursor over the memory of one loaded object; every read is checked against its span.
#[derive(Clone, Copy)]
struct Cursor {
    pos: u64,
    end: u64,
}

impl Cursor {
    fn in_object(obj: &Object, pos: u64) -> Self {
        Cursor { pos, end: obj.end }
    }

    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let next = self.pos.checked_add(N as u64)?;
        if next > self.end {
            return None;
        }
        // SAFETY: [pos, pos+N) lies inside a loaded object (checked above against its span).
        let v = unsafe { std::ptr::read_unaligned(self.pos as *const [u8; N]) };
        self.pos = next;
        Some(v)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.bytes().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_le_bytes)
    }
    fn uleb(&mut self) -> Option<u64> {
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
    fn sleb(&mut self) -> Option<i64> {
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
    fn pointer(&mut self, enc: u8, datarel: u64) -> Option<u64> {
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
enum Rule {
    Same,
    Undefined,
    Offset(i64),
    ValOffset(i64),
    Register(u16),
    Expr(u64, u64),
    ValExpr(u64, u64),
}

#[derive(Clone, Copy)]
enum CfaRule {
    RegOffset(u16, i64),
    Expr(u64, u64),
}

#[derive(Clone, Copy)]
struct RowState {
    cfa: CfaRule,
    regs: [Rule; NREGS],
}

/// What a CIE says about its FDEs.
struct Cie {
    code_align: u64,
    data_align: i64,
    ra_reg: u64,
    fde_enc: u8,
    has_aug_data: bool,
    instructions: Cursor,
}

/// Async-signal-safe. Finds the FDE covering `pc` via the `.eh_frame_hdr` search table and
/// returns its CIE, its start address and its instructions.
fn find_fde(obj: &Object, pc: u64) -> Option<(Cie, u64, Cursor)> {
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
fn entry_bounds(c: &mut Cursor) -> Option<(u64, u64)> {
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

fn parse_fde(obj: &Object, fde: u64) -> Option<(Cie, u64, u64, Cursor)> {
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

fn parse_cie(obj: &Object, at: u64) -> Option<Cie> {
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
fn run_cfa_program(
    cie: &Cie,
    mut c: Cursor,
    mut loc: u64,
    target: u64,
    row: &mut RowState,
    initial: &RowState,
) -> Option<()> {
    let mut saved = [*initial; 4];
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
fn eval_expr(obj: &Object, at: u64, len: u64, regs: &Regs, stack: &StackBounds) -> Option<u64> {
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

/// `mov $15, %rax; syscall`: the body of glibc's `__restore_rt` (rt_sigreturn).
const SIGRETURN: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// Offsets into `ucontext_t` on x86_64: `uc_mcontext.gregs` starts at byte 40; the glibc
/// `REG_*` index of each DWARF register 0..=16.
const GREGS_OFFSET: u64 = 40;
const GREG_OF_DWARF: [u64; NREGS] = [13, 12, 14, 11, 9, 8, 10, 15, 0, 1, 2, 3, 4, 5, 6, 7, 16];

/// Reads the registers saved in a `ucontext_t` at `uc` on the stack.
fn regs_from_ucontext_on_stack(uc: u64, stack: &StackBounds) -> Option<Regs> {
    let mut regs = Regs([None; NREGS]);
    for (dwarf, &greg) in GREG_OF_DWARF.iter().enumerate() {
        let v = stack.read_u64(uc.checked_add(GREGS_OFFSET + greg * 8)?)?;
        *regs.0.get_mut(dwarf)? = Some(v);
    }
    Some(regs)
}

/// Reads the registers of a `ucontext_t` given to a signal handler.
///
/// # Safety
/// `uc` must point to the `ucontext_t` the kernel passed to a SA_SIGINFO handler.
pub unsafe fn regs_from_ucontext(uc: *const libc::c_void) -> Regs {
    let mut regs = Regs([None; NREGS]);
    let gregs = (uc as *const u8).add(GREGS_OFFSET as usize) as *const u64;
    for (dwarf, &greg) in GREG_OF_DWARF.iter().enumerate() {
        // SAFETY: the caller guarantees a kernel ucontext; gregs has 23 entries.
        regs.0[dwarf] = Some(std::ptr::read_unaligned(gregs.add(greg as usize)));
    }
    regs
}

// ---- A cache of simple unwind rules by address ----------------------------------------
//
// Parsing a CIE and an FDE and running their programs costs about a thousand instructions
// a frame; stacks repeat the same addresses. A direct-mapped table keeps, per address, the
// rule of the common shape (CFA = RSP or RBP + offset, return address and RBP saved at
// offsets from the CFA). Entries are read and written seqlock-style with atomics only, so
// signal handlers can use it: a reader that sees a write in progress just misses, and a
// writer that finds the entry busy does not cache. dlclose clears it (see UnloadFence).
// Other callee-saved registers keep their values through a cached step; only a later
// frame whose CFA is computed from such a register could be affected.

const RULE_SLOTS: usize = 4096;

struct RuleEntry {
    seq: AtomicU64,
    key: AtomicU64,
    rule: AtomicU64,
}

static RULES: [RuleEntry; RULE_SLOTS] = [const {
    RuleEntry {
        seq: AtomicU64::new(0),
        key: AtomicU64::new(0),
        rule: AtomicU64::new(0),
    }
}; RULE_SLOTS];

fn rule_slot(key: u64) -> &'static RuleEntry {
    &RULES[(key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize % RULE_SLOTS]
}

/// Async-signal-safe.
fn rule_cache_get(key: u64) -> Option<u64> {
    let e = rule_slot(key);
    let s1 = e.seq.load(Ordering::Acquire);
    if s1 == 0 || s1 & 1 == 1 {
        return None;
    }
    let (k, r) = (
        e.key.load(Ordering::Relaxed),
        e.rule.load(Ordering::Relaxed),
    );
    std::sync::atomic::fence(Ordering::Acquire);
    (e.seq.load(Ordering::Relaxed) == s1 && k == key).then_some(r)
}

/// Async-signal-safe.
fn rule_cache_put(key: u64, rule: u64) {
    let e = rule_slot(key);
    let s = e.seq.load(Ordering::Relaxed);
    if s & 1 == 1
        || e.seq
            .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    e.key.store(key, Ordering::Relaxed);
    e.rule.store(rule, Ordering::Relaxed);
    e.seq.store(s + 2, Ordering::Release);
}

fn rule_cache_clear() {
    for e in &RULES {
        e.seq.store(0, Ordering::Release);
    }
}

/// Packs a row of the common shape: bit 0 CFA from RBP (else RSP), bit 1 RBP saved,
/// bits 2..26 CFA offset (signed 24), 26..42 RA offset, 42..58 RBP offset (signed 16).
fn pack_rule(row: &RowState) -> Option<u64> {
    let CfaRule::RegOffset(reg, cfa_off) = row.cfa else {
        return None;
    };
    let from_rbp = match reg as usize {
        RSP => 0u64,
        6 => 1,
        _ => return None,
    };
    let Rule::Offset(ra_off) = row.regs[RA] else {
        return None;
    };
    let (rbp_saved, rbp_off) = match row.regs[6] {
        Rule::Same => (0u64, 0i64),
        Rule::Offset(o) => (1, o),
        _ => return None,
    };
    let fits = |v: i64, bits: u32| v >= -(1 << (bits - 1)) && v < (1 << (bits - 1));
    if !fits(cfa_off, 24) || !fits(ra_off, 16) || !fits(rbp_off, 16) {
        return None;
    }
    let field = |v: i64, bits: u32| (v as u64) & ((1u64 << bits) - 1);
    Some(
        from_rbp
            | rbp_saved << 1
            | field(cfa_off, 24) << 2
            | field(ra_off, 16) << 26
            | field(rbp_off, 16) << 42,
    )
}

fn unpack_field(rule: u64, shift: u32, bits: u32) -> i64 {
    let v = (rule >> shift) & ((1u64 << bits) - 1);
    ((v << (64 - bits)) as i64) >> (64 - bits)
}

/// Applies a cached rule: the caller's registers, or None if a read fails.
fn step_cached(regs: &Regs, rule: u64, stack: &StackBounds) -> Option<Regs> {
    let base = if rule & 1 == 1 {
        regs.0[6]?
    } else {
        regs.0[RSP]?
    };
    let cfa = base.wrapping_add(unpack_field(rule, 2, 24) as u64);
    let mut caller = *regs;
    caller.0[RA] = Some(stack.read_u64(cfa.wrapping_add(unpack_field(rule, 26, 16) as u64))?);
    if rule & 2 == 2 {
        caller.0[6] = stack.read_u64(cfa.wrapping_add(unpack_field(rule, 42, 16) as u64));
    }
    caller.0[RSP] = Some(cfa);
    (cfa > regs.0[RSP]?).then_some(caller)
}

/// One step: the caller's registers, from the callee's.
fn step(regs: &Regs, pc_is_exact: bool, stack: &StackBounds) -> Option<(Regs, bool)> {
    let pc = regs.0[RA]?;
    let lookup = if pc_is_exact { pc } else { pc.wrapping_sub(1) };
    if let Some(rule) = rule_cache_get(lookup) {
        return step_cached(regs, rule, stack).map(|r| (r, false));
    }
    let obj = find_object(pc)?;
    // A return address that points at __restore_rt means the callee was a signal handler:
    // the interrupted context's registers are in the ucontext at the stack pointer.
    if !pc_is_exact {
        let mut c = Cursor::in_object(&obj, pc);
        if c.bytes::<9>() == Some(SIGRETURN) {
            let sp = regs.0[RSP]?;
            return Some((regs_from_ucontext_on_stack(sp, stack)?, true));
        }
    }
    // For a return address, look up the call instruction (pc - 1), as libgcc does for
    // frames that are not signal frames.
    let (cie, pc_begin, insns) = find_fde(&obj, lookup)?;
    let mut initial = RowState {
        cfa: CfaRule::RegOffset(RSP as u16, 8),
        regs: [Rule::Same; NREGS],
    };
    if cie.ra_reg != RA as u64 {
        return None;
    }
    let init_copy = initial;
    run_cfa_program(
        &cie,
        cie.instructions,
        pc_begin,
        u64::MAX,
        &mut initial,
        &init_copy,
    )?;
    let mut row = initial;
    run_cfa_program(&cie, insns, pc_begin, lookup, &mut row, &initial)?;
    if let Some(rule) = pack_rule(&row) {
        rule_cache_put(lookup, rule);
    }
    let cfa = match row.cfa {
        CfaRule::RegOffset(r, off) => regs
            .0
            .get(usize::from(r))
            .copied()
            .flatten()?
            .wrapping_add(off as u64),
        CfaRule::Expr(at, len) => eval_expr(&obj, at, len, regs, stack)?,
    };
    let mut caller = Regs([None; NREGS]);
    for (r, rule) in row.regs.iter().enumerate() {
        caller.0[r] = match *rule {
            Rule::Same => regs.0[r],
            Rule::Undefined => None,
            Rule::Offset(off) => stack.read_u64(cfa.wrapping_add(off as u64)),
            Rule::ValOffset(off) => Some(cfa.wrapping_add(off as u64)),
            Rule::Register(r2) => regs.0.get(usize::from(r2)).copied().flatten(),
            Rule::Expr(at, len) => stack.read_u64(eval_expr(&obj, at, len, regs, stack)?),
            Rule::ValExpr(at, len) => eval_expr(&obj, at, len, regs, stack),
        };
    }
    // The RA column gives the caller's PC; an undefined one ends the stack (glibc's _start
    // and clone mark the outermost frame so).
    if row.regs[RA] == Rule::Undefined {
        return None;
    }
    caller.0[RSP] = Some(cfa);
    // The stack grows down: a caller's frame is above its callee's.
    if cfa <= regs.0[RSP]? {
        return None;
    }
    Some((caller, false))
}

/// The result of one stack walk: `depth` addresses in `pcs`, leaf first. Return addresses
/// are stored minus one so that they fall inside the call instruction (what symbolizers
/// and `pprof` expect); the leaf is the interrupted instruction itself.
pub struct Walk {
    pub depth: usize,
    pub truncated: bool,
}

/// Async-signal-safe. Walks the stack of the interrupted context `regs` into `pcs`.
/// With no stack bounds only the leaf is recorded.
pub fn walk(regs: &Regs, stack: Option<StackBounds>, pcs: &mut [u64; MAX_DEPTH]) -> Walk {
    let Some(leaf) = regs.0[RA] else {
        return Walk {
            depth: 0,
            truncated: false,
        };
    };
    pcs[0] = leaf;
    let mut w = Walk {
        depth: 1,
        truncated: false,
    };
    let Some(stack) = stack else {
        return w;
    };
    let _ = UNLOAD_FENCE.enter(|| {
        let mut cur = *regs;
        let mut exact = true;
        while let Some((caller, caller_exact)) = step(&cur, exact, &stack) {
            let Some(pc) = caller.0[RA].filter(|&pc| pc > 1) else {
                break;
            };
            if w.depth == MAX_DEPTH {
                w.truncated = true;
                break;
            }
            pcs[w.depth] = if caller_exact { pc } else { pc - 1 };
            w.depth += 1;
            cur = caller;
            exact = caller_exact;
        }
    });
    w
}
