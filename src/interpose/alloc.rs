//! The allocation functions, each a thin shim: the real function (the next definition in
//! lookup order, so a program's own jemalloc or tcmalloc keeps serving it), then the
//! heap profiler's bookkeeping. Frees are reported before the memory goes back.
#![allow(unsafe_code)]

use libc::{c_int, c_void, size_t};

use crate::kinds::heap;
use crate::signal_safe::real;

// malloc and free are written in assembly (naked functions): the unsampled path is a few
// instructions ending in a jump to the real function, with no stack frame and no test
// that the compiler would add (it loads a function pointer before jumping through it, and
// splits a read-modify-write into three instructions).
//
// Both reach the thread's state by the initial-exec TLS model (`thread_state`): `block`
// is the offset of the thread's counter block from `heap_counters::HOT`, which also holds the
// blocks a thread writes before it has its own (offset 0) and while rprof works on it, and
// the slot bitmap. The counts are exact (see `heap::Counters`): a malloc adds to the call
// count and runs down the sampling countdown (the bytes requested follow from it); a free
// adds to the free count.

/// # Safety
/// As malloc(3).
#[cfg(not(test))]
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn malloc(size: size_t) -> *mut c_void {
    // Counted first, so that a malloc that fails is counted too (the other functions
    // count only what they allocate). A countdown taken below zero (a sample, or the
    // thread's first call: UNCLAIMED's is always negative) goes on in
    // `rprof_malloc_negative`, with `[rsp]` and `rbp` still the program's.
    std::arch::naked_asm!(
        // At the start of the function's own section: no padding, the section aligned.
        ".p2align 5",
        "mov rax, qword ptr [rip + rprof_thread_state@GOTTPOFF]",
        "mov rcx, qword ptr fs:[rax]",
        "lea rdx, [rip + {hot}]",
        "inc qword ptr [rdx + rcx + {mallocs}]",
        "sub qword ptr [rdx + rcx], rdi",
        "js {negative}",
        "jmp qword ptr [rip + {real}]",
        hot = sym crate::signal_safe::heap_counters::HOT,
        mallocs = const crate::signal_safe::heap_counters::MALLOCS_OFFSET,
        negative = sym rprof_malloc_negative,
        real = sym real::MALLOC_NOW,
    )
}

/// A malloc whose countdown the hook took below zero: a sample, or the thread's first
/// call. The hook reaches it by a jump, so at its entry `[rsp]` is the return address
/// into the program and `rbp` the program's: passed on, the sample's stack is walked from
/// the program's frame (`stack::with_stack_from_call`).
///
/// In the CPU handler's section, whose pages every sample keeps resident: every thread's
/// first malloc comes here, and a timer tick that expires while the kernel faults in a
/// cold page is delivered at that page's code (the sample would then name rprof).
#[cfg(not(test))]
#[unsafe(naked)]
#[link_section = ".text.hot.rprof_sample"]
unsafe extern "C" fn rprof_malloc_negative(size: size_t) -> *mut c_void {
    std::arch::naked_asm!(
        "mov rsi, rsp",
        "mov rdx, rbp",
        "jmp {body}",
        body = sym malloc_negative_body,
    )
}

/// `malloc`'s negative countdown (see `rprof_malloc_negative`). `extern "C"` (cannot
/// unwind): the entry jumps here.
#[cfg(not(test))]
#[cold]
#[inline(never)]
#[link_section = ".text.hot.rprof_sample"]
extern "C" fn malloc_negative_body(size: size_t, sp: u64, bp: u64) -> *mut c_void {
    if heap::after_fast_count(size) {
        let p = real::malloc(size);
        heap::sample_from_call(p, size, sp, bp);
        return p;
    }
    real::malloc(size)
}

/// # Safety
/// As free(3).
#[cfg(not(test))]
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // A free whose slot is marked (a sampled block may start in the granule, or the slot
    // is marked for good: null and the bootstrap pool's pointers) takes the general path;
    // the others add one to the thread's free count and jump to the real free. The slot
    // is the address's 256-byte granule modulo 64 Ki (`heap::slot_bit`): bits 8 to 23 of
    // the address, a word of the bitmap chosen by bits 14 to 23 and a bit by bits 8 to 13
    // (`bt` reads only the low six bits of its register operand).
    std::arch::naked_asm!(
        // At the start of the function's own section: no padding, the section aligned.
        ".p2align 5",
        "mov rax, qword ptr [rip + rprof_thread_state@GOTTPOFF]",
        "mov rcx, qword ptr fs:[rax]",
        "mov eax, edi",
        "shr eax, 8",
        "mov edx, eax",
        "shr edx, 6",
        "and edx, {word_mask}",
        "lea rsi, [rip + {hot}]",
        "mov rdx, qword ptr [rsi + rdx * 8 + {slot_bits}]",
        "bt rdx, rax",
        "jc {general}",
        "inc qword ptr [rsi + rcx + {frees}]",
        "jmp qword ptr [rip + {real}]",
        word_mask = const crate::signal_safe::heap_counters::SLOT_WORDS - 1,
        hot = sym crate::signal_safe::heap_counters::HOT,
        slot_bits = const crate::signal_safe::heap_counters::SLOT_BITS_OFFSET,
        general = sym free_counting,
        frees = const crate::signal_safe::heap_counters::FREES_OFFSET,
        real = sym real::FREE_NOW,
    )
}

/// A free that the hook left to the general path (a slot marked by a sampled block, or for
/// good). `extern "C"` so that the hook reaches it by a jump.
#[cfg(not(test))]
#[cold]
#[inline(never)]
extern "C" fn free_counting(p: *mut c_void) {
    // Pool pointers are never freed.
    if p.is_null() || real::is_bootstrap(p) {
        return;
    }
    heap::on_free(p);
    real::free(p);
}

/// # Safety
/// As calloc(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn calloc(n: size_t, size: size_t) -> *mut c_void {
    let p = real::calloc(n, size);
    heap::on_alloc(p, n.saturating_mul(size));
    p
}

/// # Safety
/// As realloc(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn realloc(old: *mut c_void, size: size_t) -> *mut c_void {
    if !old.is_null() && real::is_bootstrap(old) {
        return real::realloc_bootstrap(old, size);
    }
    if old.is_null() {
        let p = real::realloc(old, size);
        heap::on_alloc(p, size);
        return p;
    }
    // The old block is accounted as freed before the call (once it returns, another thread
    // may already have been given that address); a failure leaves it allocated, so that is
    // undone. realloc(p, 0) returning null freed p (glibc).
    let freed = heap::on_free_undoable(old);
    let p = real::realloc(old, size);
    if p.is_null() && size != 0 {
        heap::undo_free(old, freed);
    }
    heap::on_alloc(p, size);
    p
}

/// # Safety
/// As reallocarray(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn reallocarray(old: *mut c_void, n: size_t, size: size_t) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => realloc(old, total),
        None => {
            *libc::__errno_location() = libc::ENOMEM;
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// As posix_memalign(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_memalign(
    out: *mut *mut c_void,
    align: size_t,
    size: size_t,
) -> c_int {
    let rc = real::posix_memalign(out, align, size);
    if rc == 0 {
        heap::on_alloc(*out, size);
    }
    rc
}

/// # Safety
/// As aligned_alloc(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: size_t, size: size_t) -> *mut c_void {
    let p = real::aligned_alloc(align, size);
    heap::on_alloc(p, size);
    p
}

/// # Safety
/// As memalign(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memalign(align: size_t, size: size_t) -> *mut c_void {
    let p = real::memalign(align, size);
    heap::on_alloc(p, size);
    p
}

/// # Safety
/// As valloc(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn valloc(size: size_t) -> *mut c_void {
    let p = real::valloc(size);
    heap::on_alloc(p, size);
    p
}

/// # Safety
/// As pvalloc(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pvalloc(size: size_t) -> *mut c_void {
    let p = real::pvalloc(size);
    heap::on_alloc(p, size);
    p
}

/// # Safety
/// As malloc_usable_size(3).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> size_t {
    if !p.is_null() && real::is_bootstrap(p) {
        return real::bootstrap_size(p);
    }
    real::malloc_usable_size(p)
}
