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

use super::cfi::{eval_expr, find_fde, run_cfa_program, CfaRule, Cursor, Object, RowState, Rule};
use super::go_frames;
use super::rule_cache::{
    pack_rule, rule_cache_clear, rule_cache_get, rule_cache_put, step_cached, step_cached_parts,
    END_OF_STACK,
};

pub use super::frame::*;

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
        start: r.map_start as u64,
        end: r.map_end as u64,
        eh_frame_hdr: r.eh_frame as u64,
    })
}

/// `mov $15, %rax; syscall`: the body of glibc's `__restore_rt` (rt_sigreturn).
const SIGRETURN: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// Offsets into `ucontext_t` on x86_64: `uc_mcontext.gregs` starts at byte 40; the glibc
/// `REG_*` index of each DWARF register 0..=16.
const GREGS_OFFSET: u64 = 40;
const GREG_OF_DWARF: [u64; NREGS] = [13, 12, 14, 11, 9, 8, 10, 15, 0, 1, 2, 3, 4, 5, 6, 7, 16];

/// Reads the registers saved in a `ucontext_t` at `uc` on the stack.
fn regs_from_ucontext_on_stack(uc: u64, stack: &StackBounds, regs: &mut Regs) -> Option<()> {
    for (dwarf, &greg) in GREG_OF_DWARF.iter().enumerate() {
        let v = stack.read_u64(uc.checked_add(GREGS_OFFSET + greg * 8)?)?;
        *regs.0.get_mut(dwarf)? = Some(v);
    }
    Some(())
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

/// What a walk works in, kept off the interrupted thread's stack (a thread may have only
/// a few KiB of it, and a signal frame is already on top): the registers of the frame
/// being stepped and of its caller, and the rows of the CFA program.
pub struct Scratch {
    /// The walk reached the outermost frame (glibc's `clone` or `_start`).
    ended: bool,
    /// The last step failed because the pc has no unwind table (in no loaded object, or
    /// no FDE covers it): code a JIT generated.
    no_table: bool,
    cur: Regs,
    caller: Regs,
    initial: RowState,
    init_copy: RowState,
    row: RowState,
    saved: [RowState; 4],
}

const EMPTY_ROW: RowState = RowState {
    cfa: CfaRule::RegOffset(0, 0),
    regs: [Rule::Same; NREGS],
};

/// Walks that may run at once (each holds one scratch area); a walk that finds none free
/// keeps the leaf only.
const SCRATCH_SLOTS: usize = 64;

struct ScratchSlot(std::cell::UnsafeCell<Scratch>);

// SAFETY: a slot is used only by the walk that holds its bit in SCRATCH_USED.
unsafe impl Sync for ScratchSlot {}

static SCRATCH: [ScratchSlot; SCRATCH_SLOTS] = [const {
    ScratchSlot(std::cell::UnsafeCell::new(Scratch {
        ended: false,
        no_table: false,
        cur: Regs([None; NREGS]),
        caller: Regs([None; NREGS]),
        initial: EMPTY_ROW,
        init_copy: EMPTY_ROW,
        row: EMPTY_ROW,
        saved: [EMPTY_ROW; 4],
    }))
}; SCRATCH_SLOTS];
static SCRATCH_USED: AtomicU64 = AtomicU64::new(0);

/// Walks that kept only the leaf: no scratch area was free, or too little stack was left
/// below the handler.
static LEAF_ONLY: AtomicU64 = AtomicU64::new(0);

/// Stack a walk needs below the point where it starts (its frames and the functions it
/// calls, about 1 KiB, with room to spare).
pub const WALK_STACK_NEEDED: u64 = 2048;

/// Whether the calling thread has `WALK_STACK_NEEDED` bytes of stack left above `floor`
/// (the lowest address its stack may use; 0: not known) where the walk starts.
#[inline(always)]
fn room_to_walk(floor: u64) -> bool {
    let probe = 0u8;
    let here = std::ptr::addr_of!(probe) as u64;
    floor == 0 || here.saturating_sub(floor) >= WALK_STACK_NEEDED
}

/// Walks cut to the leaf since load (or fork).
pub fn leaf_only_walks() -> u64 {
    LEAF_ONLY.load(Ordering::Relaxed)
}

/// Async-signal-safe. Runs `f` with a scratch area of its own, if one is free.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> Option<R> {
    let mut used = SCRATCH_USED.load(Ordering::Relaxed);
    loop {
        let free = (!used).trailing_zeros() as usize;
        if free >= SCRATCH_SLOTS {
            return None;
        }
        match SCRATCH_USED.compare_exchange_weak(
            used,
            used | 1 << free,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                // SAFETY: the bit just set makes this call the slot's only user.
                let r = f(unsafe { &mut *SCRATCH[free].0.get() });
                SCRATCH_USED.fetch_and(!(1 << free), Ordering::Release);
                return Some(r);
            }
            Err(now) => used = now,
        }
    }
}

/// In a fork child: walks in progress on the parent's other threads do not exist here.
pub fn reset_after_fork() {
    if SCRATCH_USED.load(Ordering::Relaxed) != 0 {
        SCRATCH_USED.store(0, Ordering::Relaxed);
    }
    if LEAF_ONLY.load(Ordering::Relaxed) != 0 {
        LEAF_ONLY.store(0, Ordering::Relaxed);
    }
}

/// One step: the caller's registers (into `s.caller`), from the callee's (`s.cur`).
/// Returns whether the caller's pc is exact (a signal frame's), None at the end.
fn step(s: &mut Scratch, pc_is_exact: bool, stack: &StackBounds) -> Option<bool> {
    s.no_table = false;
    let regs = &s.cur;
    let pc = regs.0[RA]?;
    let lookup = if pc_is_exact { pc } else { pc.wrapping_sub(1) };
    if let Some(rule) = rule_cache_get(lookup) {
        if rule == END_OF_STACK {
            s.ended = true;
            return None;
        }
        return step_cached(regs, rule, stack, &mut s.caller).map(|()| false);
    }
    let Some(obj) = find_object(pc) else {
        s.no_table = true;
        return None;
    };
    // A return address that points at __restore_rt means the callee was a signal handler:
    // the interrupted context's registers are in the ucontext at the stack pointer.
    if !pc_is_exact {
        let mut c = Cursor::in_object(&obj, pc);
        if c.bytes::<9>() == Some(SIGRETURN) {
            let sp = regs.0[RSP]?;
            regs_from_ucontext_on_stack(sp, stack, &mut s.caller)?;
            return Some(true);
        }
    }
    // For a return address, look up the call instruction (pc - 1), as libgcc does for
    // frames that are not signal frames.
    let Some((cie, pc_begin, insns)) = find_fde(&obj, lookup) else {
        s.no_table = true;
        return None;
    };
    if cie.ra_reg != RA as u64 {
        return None;
    }
    s.initial = RowState {
        cfa: CfaRule::RegOffset(RSP as u16, 8),
        regs: [Rule::Same; NREGS],
    };
    s.init_copy = s.initial;
    run_cfa_program(
        &cie,
        cie.instructions,
        pc_begin,
        u64::MAX,
        &mut s.initial,
        &s.init_copy,
        &mut s.saved,
    )?;
    s.row = s.initial;
    run_cfa_program(
        &cie,
        insns,
        pc_begin,
        lookup,
        &mut s.row,
        &s.initial,
        &mut s.saved,
    )?;
    let (row, regs) = (&s.row, &s.cur);
    if row.regs[RA] == Rule::Undefined {
        rule_cache_put(lookup, END_OF_STACK);
    } else if let Some(rule) = pack_rule(row) {
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
    for (r, rule) in row.regs.iter().enumerate() {
        s.caller.0[r] = match *rule {
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
        s.ended = true;
        return None;
    }
    s.caller.0[RSP] = Some(cfa);
    // The stack grows down: a caller's frame is above its callee's.
    if cfa <= regs.0[RSP]? {
        return None;
    }
    Some(false)
}

/// The result of one stack walk: `depth` addresses in `pcs`, leaf first. Return addresses
/// are stored minus one so that they fall inside the call instruction (what symbolizers
/// and `pprof` expect); the leaf is the interrupted instruction itself.
pub struct Walk {
    pub depth: usize,
    pub truncated: bool,
    /// The walk reached the thread's outermost frame (glibc's `clone` or `_start`): the
    /// stack is whole.
    pub finished: bool,
}

/// Async-signal-safe. Walks the stack of the interrupted context `regs` into `pcs`.
/// With no stack bounds only the leaf is recorded; so too when less than
/// `WALK_STACK_NEEDED` bytes are left above `floor` (the lowest address the calling
/// thread's own stack may use; 0: not known) or no scratch area is free.
pub fn walk(
    regs: &Regs,
    stack: Option<StackBounds>,
    floor: u64,
    pcs: &mut [u64; MAX_DEPTH],
) -> Walk {
    walk_from(regs.0[RA], true, |r| *r = *regs, stack, floor, pcs)
}

/// Async-signal-safe. As `walk`, for registers taken at a function's entry: their pc is a
/// return address (recorded minus one, its call looked up, as for every caller).
pub fn walk_from_call(
    regs: &Regs,
    stack: Option<StackBounds>,
    floor: u64,
    pcs: &mut [u64; MAX_DEPTH],
) -> Walk {
    walk_from(regs.0[RA], false, |r| *r = *regs, stack, floor, pcs)
}

/// Async-signal-safe. The walk from a call (as `walk_from_call`) when every frame's rule
/// is in the rule cache, as it is once a program's stacks have been seen: the return
/// address, stack and frame pointers are kept in locals, no scratch area is taken and
/// nothing is read but the stack (within `stack`) and the cache; `pcs` is written only
/// up to the depth returned. None when a rule is missing or a step fails: the caller then
/// walks in full (`walk_from_call`), which fills the cache, takes the steps the cache does
/// not know (signal frames, JIT code, Go's frames beyond cgo) and ends where this one
/// could not go on. A sampled allocation's stack is walked so with a handful of cache
/// lines, where the full walk's registers and rows take dozens that the program has
/// evicted since the last sample.
pub fn walk_cached_from_call(
    ra: u64,
    sp: u64,
    bp: u64,
    stack: &StackBounds,
    floor: u64,
    pcs: &mut [std::mem::MaybeUninit<u64>; MAX_DEPTH],
) -> Option<Walk> {
    if !room_to_walk(floor) {
        return None;
    }
    let (mut ra, mut sp, mut bp) = (ra, sp, Some(bp));
    pcs[0].write(ra.wrapping_sub(1));
    let mut depth = 1;
    loop {
        let rule = rule_cache_get(ra.wrapping_sub(1))?;
        if rule == END_OF_STACK {
            return Some(Walk {
                depth,
                truncated: false,
                finished: true,
            });
        }
        let (caller_ra, caller_sp, caller_bp) = step_cached_parts(rule, sp, bp, stack)?;
        if caller_ra <= 1 {
            return Some(Walk {
                depth,
                truncated: false,
                finished: false,
            });
        }
        if depth == MAX_DEPTH {
            return Some(Walk {
                depth,
                truncated: true,
                finished: false,
            });
        }
        pcs[depth].write(caller_ra - 1);
        depth += 1;
        (ra, sp, bp) = (caller_ra, caller_sp, caller_bp);
    }
}

/// Async-signal-safe. As `walk`, for the context a signal handler was given: its
/// registers are read straight into the scratch area, never copied onto the stack.
///
/// # Safety
/// `uc` must point to the `ucontext_t` the kernel passed to a SA_SIGINFO handler.
pub unsafe fn walk_ucontext(
    uc: *const libc::c_void,
    stack: Option<StackBounds>,
    floor: u64,
    pcs: &mut [u64; MAX_DEPTH],
) -> Walk {
    // SAFETY: the caller guarantees a kernel ucontext.
    let (pc, _) = unsafe { pc_sp_from_ucontext(uc) };
    // SAFETY: as above.
    walk_from(
        Some(pc),
        true,
        |r| *r = unsafe { regs_from_ucontext(uc) },
        stack,
        floor,
        pcs,
    )
}

/// The interrupted pc and stack pointer in a `ucontext_t`.
///
/// # Safety
/// As `regs_from_ucontext`.
pub unsafe fn pc_sp_from_ucontext(uc: *const libc::c_void) -> (u64, u64) {
    let gregs = (uc as *const u8).add(GREGS_OFFSET as usize) as *const u64;
    // SAFETY: the caller guarantees a kernel ucontext: gregs has 23 entries.
    let at = |dwarf: usize| unsafe {
        std::ptr::read_unaligned(gregs.add(GREG_OF_DWARF[dwarf] as usize))
    };
    (at(RA), at(RSP))
}

#[inline(always)]
fn walk_from(
    leaf: Option<u64>,
    leaf_is_exact: bool,
    load: impl FnOnce(&mut Regs),
    stack: Option<StackBounds>,
    floor: u64,
    pcs: &mut [u64; MAX_DEPTH],
) -> Walk {
    let Some(leaf) = leaf else {
        return Walk {
            depth: 0,
            truncated: false,
            finished: false,
        };
    };
    pcs[0] = if leaf_is_exact {
        leaf
    } else {
        leaf.wrapping_sub(1)
    };
    let mut w = Walk {
        depth: 1,
        truncated: false,
        finished: false,
    };
    let Some(stack) = stack else {
        return w;
    };
    if !room_to_walk(floor) {
        LEAF_ONLY.fetch_add(1, Ordering::Relaxed);
        return w;
    }
    let walked = with_scratch(|s| {
        load(&mut s.cur);
        s.ended = false;
        let _ = UNLOAD_FENCE.enter(|| {
            let mut exact = leaf_is_exact;
            loop {
                let mut stepped = step(s, exact, &stack);
                // Over a copy of a blocked thread's stack, whose frame pointer /proc does not
                // give: a frame whose CFA is rbp-based (code built with frame pointers)
                // finds rbp on the stack.
                if stepped.is_none() && !s.ended && !stack.copy.is_null() && s.cur.0[RBP].is_none()
                {
                    if let Some(bp) = s.cur.0[RSP].and_then(|sp| find_frame_pointer(sp, &stack)) {
                        s.cur.0[RBP] = Some(bp);
                        stepped = step(s, exact, &stack);
                    }
                }
                // Code with no unwind table (a JIT's: V8, Python's trampolines, HotSpot,
                // or builtins embedded without CFI): its frame-pointer chain, checked at
                // each step; back in code that has a table, CFI goes on.
                if stepped.is_none() && s.no_table {
                    stepped = frame_pointer_step(s, &stack);
                }
                let Some(caller_exact) = stepped else {
                    // C called from Go: the goroutine's frames lie beyond asmcgocall.
                    if let (Some(pc), Some(sp)) = (s.cur.0[RA], s.cur.0[RSP]) {
                        if !exact && go_frames::is_cgo_return(pc) {
                            let bp = s.cur.0[RBP];
                            go_frames::extend(sp, bp, &stack, pcs, &mut w.depth, &mut w.truncated);
                        }
                    }
                    break;
                };
                let Some(pc) = s.caller.0[RA].filter(|&pc| pc > 1) else {
                    break;
                };
                if w.depth == MAX_DEPTH {
                    w.truncated = true;
                    break;
                }
                pcs[w.depth] = if caller_exact { pc } else { pc - 1 };
                w.depth += 1;
                s.cur = s.caller;
                exact = caller_exact;
            }
        });
        s.ended
    });
    match walked {
        Some(ended) => w.finished = ended && !w.truncated,
        None => {
            LEAF_ONLY.fetch_add(1, Ordering::Relaxed);
        }
    }
    w
}

/// Async-signal-safe. One step by the frame-pointer chain, from a frame in code without an
/// unwind table that keeps one (`push %rbp; mov %rsp,%rbp`): the caller's frame pointer is
/// at rbp, its return address above it, its stack pointer past both. Checked: rbp is
/// 8-aligned, at or above the stack pointer, inside the thread's stack; the saved frame
/// pointer is the caller's rbp, whatever the caller uses it for: a caller with an unwind
/// table may keep data there, and one without is checked at its own step (its rbp at or
/// above its stack pointer: the chain rises). The return address is not in page 0. A bad
/// step ends the walk. The caller's other callee-saved registers are not known.
fn frame_pointer_step(s: &mut Scratch, stack: &StackBounds) -> Option<bool> {
    let (bp, sp) = (s.cur.0[RBP]?, s.cur.0[RSP]?);
    if bp % 8 != 0 || bp < sp || bp < stack.lo || bp.checked_add(16)? > stack.hi {
        return None;
    }
    let next_bp = stack.read_u64(bp)?;
    let ra = stack.read_u64(bp + 8)?;
    if ra < 4096 {
        return None;
    }
    s.caller = Regs([None; NREGS]);
    s.caller.0[RA] = Some(ra);
    s.caller.0[RSP] = Some(bp + 16);
    s.caller.0[RBP] = Some(next_bp);
    Some(false)
}

/// How far above a frame's stack pointer its frame pointer is looked for.
const FRAME_POINTER_SCAN: u64 = 4096;

/// Async-signal-safe. The frame pointer of the frame whose stack pointer is `sp`, found on
/// the stack: the lowest 8-aligned slot `a` at or above `sp` that holds a frame record (the
/// caller's frame pointer, above `a` or 0, and beside it a return address just after a
/// call instruction in a loaded object), whose saved frame pointer leads to another such
/// record or ends the chain. For a thread blocked in the kernel, whose rbp /proc does not
/// give, when its frames are in code built with frame pointers.
fn find_frame_pointer(sp: u64, stack: &StackBounds) -> Option<u64> {
    let record = |a: u64| -> Option<u64> {
        let next = stack.read_u64(a)?;
        let ra = stack.read_u64(a + 8)?;
        if (next != 0 && (next <= a || next % 8 != 0 || next >= stack.hi)) || !after_call(ra) {
            return None;
        }
        Some(next)
    };
    let mut a = (sp + 7) & !7;
    let end = sp.saturating_add(FRAME_POINTER_SCAN).min(stack.hi);
    while a + 16 <= end {
        if let Some(next) = record(a) {
            if next == 0 || record(next).is_some() {
                return Some(a);
            }
        }
        a += 8;
    }
    None
}

/// Async-signal-safe. Whether `ra` follows a call instruction in a loaded object (a
/// direct `call rel32`, or an indirect `call` through a register or memory).
fn after_call(ra: u64) -> bool {
    let Some(obj) = find_object(ra) else {
        return false;
    };
    if ra < obj.start.saturating_add(7) {
        return false;
    }
    let Some(b) = Cursor::in_object(&obj, ra - 7).bytes::<7>() else {
        return false;
    };
    // b[6] is the byte before ra. call rel32: e8 at ra-5. call *%reg: ff d0+r at ra-2
    // (with a REX prefix at ra-3). call *disp8(%reg): ff 50+r at ra-3, ff 54 at ra-4
    // (SIB). call *disp32(%rip) or (%reg): ff 15 / ff 90+r at ra-6, ff 94 at ra-7.
    b[2] == 0xe8
        || (b[5] == 0xff && (0xd0..=0xd7).contains(&b[6]))
        || (b[4] == 0xff && (0x50..=0x57).contains(&b[5]))
        || (b[3] == 0xff && b[4] == 0x54)
        || (b[1] == 0xff && (b[2] == 0x15 || (0x90..=0x97).contains(&b[2])))
        || (b[0] == 0xff && b[1] == 0x94)
}
