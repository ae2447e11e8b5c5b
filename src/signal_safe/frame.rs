//! What the unwinder and its helpers share: registers by DWARF number and the readable
//! span of a stack.
#![allow(unsafe_code)]

/// Deepest stack recorded; deeper stacks keep their innermost frames and are marked truncated.
pub const MAX_DEPTH: usize = 128;

pub const RA: usize = 16;
pub const RSP: usize = 7;
pub const RBP: usize = 6;
pub const NREGS: usize = 17;

/// Registers of an interrupted context, indexed by DWARF register number (0–15 the general
/// registers, 16 the return address / RIP). `None` is a value the unwinder does not know.
#[derive(Clone, Copy)]
pub struct Regs(pub [Option<u64>; NREGS]);

/// The readable span of the interrupted thread's stack: read in place, or from a copy of
/// it (`copy`: the bytes of [lo, hi), another thread's stack copied safely beforehand).
#[derive(Clone, Copy)]
pub struct StackBounds {
    pub lo: u64,
    pub hi: u64,
    pub copy: *const u8,
}

impl StackBounds {
    /// The span [lo, hi) of a stack read in place.
    pub const fn live(lo: u64, hi: u64) -> Self {
        StackBounds {
            lo,
            hi,
            copy: std::ptr::null(),
        }
    }

    pub fn read_u64(&self, addr: u64) -> Option<u64> {
        if addr < self.lo || addr.checked_add(8)? > self.hi {
            return None;
        }
        if !self.copy.is_null() {
            // SAFETY: `copy` holds the hi - lo bytes of the span; addr + 8 <= hi.
            return Some(unsafe {
                std::ptr::read_unaligned(self.copy.add((addr - self.lo) as usize) as *const u64)
            });
        }
        // SAFETY: [lo, hi) lies within the thread's mapped stack (see module docs).
        Some(unsafe { std::ptr::read_unaligned(addr as *const u64) })
    }
}

/// The registers known of a thread stopped in the kernel: its pc and stack pointer only
/// (/proc/<tid>/syscall); the walk goes as far as frames need no other register.
pub fn regs_at(pc: u64, sp: u64) -> Regs {
    let mut regs = Regs([None; NREGS]);
    regs.0[RA] = Some(pc);
    regs.0[RSP] = Some(sp);
    regs
}
