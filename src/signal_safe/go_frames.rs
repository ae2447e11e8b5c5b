//! Go frames beyond a cgo call. C code that a Go program calls through cgo runs on the
//! thread's system stack (g0), entered by `runtime.asmcgocall`, which the CFI walk reaches
//! as the caller of the cgo wrapper (`_cgo_<hash>_Cfunc_<name>`) and cannot step through:
//! Go code has no `.eh_frame`. What asmcgocall leaves on the system stack leads back to the
//! goroutine (src/runtime/asm_amd64.s): right above the wrapper's frame it stores the
//! goroutine's `g` and the depth of the goroutine's stack pointer below `g.stack.hi`
//! (`g.stack` is g's first field: lo, hi). At that stack pointer is the return address
//! into `runtime.cgocall`, and `rbp` still holds cgocall's frame pointer (asmcgocall
//! leaves it alone, and C code restores it), from which Go's frame pointers (kept on
//! amd64) chain up to `runtime.goexit`.
//!
//! Go has stored these at two places: 48(SP)/40(SP) (Go 1.19, Debian's) and 8(SP)/0(SP)
//! (later releases, which dropped the Windows shadow space there); both are tried. Nothing outside the thread's own stack is read directly: the `g` and every
//! word of the goroutine's stack are read with process_vm_readv on this process, which
//! fails (never faults) on memory that is not mapped, and every value is checked (the
//! stack pointer inside g's stack, frame pointers rising inside it, return addresses in
//! the executable's code) before it is used. Where a check fails the stack ends there.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use super::frame::{StackBounds, MAX_DEPTH};

/// `runtime.asmcgocall`'s code [lo, hi) (0, 0: not a Go program, or its symbols are gone).
static ASM_LO: AtomicU64 = AtomicU64::new(0);
static ASM_HI: AtomicU64 = AtomicU64::new(0);
/// `runtime.cgocall`'s code: asmcgocall's caller on a goroutine.
static CGOCALL_LO: AtomicU64 = AtomicU64::new(0);
static CGOCALL_HI: AtomicU64 = AtomicU64::new(0);
/// The executable code of the object holding the Go runtime [lo, hi).
static TEXT_LO: AtomicU64 = AtomicU64::new(0);
static TEXT_HI: AtomicU64 = AtomicU64::new(0);

/// Where asmcgocall keeps (g, depth) above its callee's frame, newest first.
const LAYOUTS: [(u64, u64); 2] = [(48, 40), (8, 0)];
/// Largest goroutine stack believed (Go's default maximum is 1 GB).
const MAX_GOROUTINE_STACK: u64 = 1 << 30;

/// Not signal-safe: at load, before any walk can use it.
pub fn set(asmcgocall: (u64, u64), cgocall: (u64, u64), text: (u64, u64)) {
    CGOCALL_LO.store(cgocall.0, Ordering::Relaxed);
    CGOCALL_HI.store(cgocall.1, Ordering::Relaxed);
    TEXT_LO.store(text.0, Ordering::Relaxed);
    TEXT_HI.store(text.1, Ordering::Relaxed);
    ASM_LO.store(asmcgocall.0, Ordering::Relaxed);
    ASM_HI.store(asmcgocall.1, Ordering::Release);
}

/// Whether `ret`, a return address, is in runtime.asmcgocall (the caller of cgo's wrapper).
pub(super) fn is_cgo_return(ret: u64) -> bool {
    let hi = ASM_HI.load(Ordering::Acquire);
    hi != 0 && ret > ASM_LO.load(Ordering::Relaxed) && ret <= hi
}

fn in_text(pc: u64) -> bool {
    pc >= TEXT_LO.load(Ordering::Relaxed) && pc < TEXT_HI.load(Ordering::Relaxed)
}

/// Reads `N` words at `addr` of this process's memory without faulting: None where any
/// of it is not mapped.
fn read_words<const N: usize>(addr: u64) -> Option<[u64; N]> {
    let mut out = [0u64; N];
    let len = 8 * N;
    let local = libc::iovec {
        iov_base: out.as_mut_ptr() as *mut libc::c_void,
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: process_vm_readv writes at most `len` bytes into `out` and only reads the
    // remote range, reporting unmapped memory as an error instead of faulting.
    let n = unsafe {
        let errno = *libc::__errno_location();
        let n = libc::syscall(
            libc::SYS_process_vm_readv,
            libc::getpid(),
            &local as *const libc::iovec,
            1usize,
            &remote as *const libc::iovec,
            1usize,
            0usize,
        );
        *libc::__errno_location() = errno;
        n
    };
    (n == len as i64).then_some(out)
}

/// The goroutine's stack pointer at asmcgocall's entry and the span [sp, hi) of its
/// stack, from asmcgocall's frame whose stack pointer is `sp` (on `stack`, the system
/// stack). The system stack itself when asmcgocall was already on it (no g saved).
fn goroutine_stack(sp: u64, stack: &StackBounds) -> Option<(u64, u64)> {
    for (g_at, depth_at) in LAYOUTS {
        let (Some(g), Some(depth)) = (stack.read_u64(sp + g_at), stack.read_u64(sp + depth_at))
        else {
            continue;
        };
        if g == 0 {
            // asmcgocall's nosave path: `depth` is the original stack pointer itself.
            if depth > sp && depth < stack.hi && stack.read_u64(depth).is_some_and(in_text) {
                return Some((depth, stack.hi));
            }
            continue;
        }
        let Some([lo, hi]) = read_words::<2>(g) else {
            continue;
        };
        if lo >= hi || hi - lo > MAX_GOROUTINE_STACK || depth == 0 || depth > hi - lo {
            continue;
        }
        let old_sp = hi - depth;
        let in_cgocall = |ret: u64| {
            ret > CGOCALL_LO.load(Ordering::Relaxed) && ret <= CGOCALL_HI.load(Ordering::Relaxed)
        };
        if read_words::<1>(old_sp).is_some_and(|[ret]| in_cgocall(ret)) {
            return Some((old_sp, hi));
        }
    }
    None
}

/// Async-signal-safe. Appends the Go frames above a cgo call to `pcs[*depth..]`: the walk
/// stopped at asmcgocall's frame, whose stack pointer is `sp` and frame pointer `bp`.
pub(super) fn extend(
    sp: u64,
    bp: Option<u64>,
    stack: &StackBounds,
    pcs: &mut [u64; MAX_DEPTH],
    depth: &mut usize,
    truncated: &mut bool,
) {
    let Some((old_sp, hi)) = goroutine_stack(sp, stack) else {
        return;
    };
    let mut push = |pc: u64, depth: &mut usize| -> bool {
        if *depth == MAX_DEPTH {
            *truncated = true;
            return false;
        }
        pcs[*depth] = pc - 1;
        *depth += 1;
        true
    };
    // The return address into runtime.cgocall.
    let Some([ret]) = read_words::<1>(old_sp) else {
        return;
    };
    if !push(ret, depth) {
        return;
    }
    let Some(mut fp) = bp.filter(|&fp| fp > old_sp && fp < hi) else {
        return;
    };
    loop {
        let Some([next, ret]) = read_words::<2>(fp) else {
            return;
        };
        if !in_text(ret) || !push(ret, depth) {
            return;
        }
        // runtime.goexit's caller frame has no saved frame pointer: the chain ends at 0.
        if next <= fp || next >= hi {
            return;
        }
        fp = next;
    }
}
