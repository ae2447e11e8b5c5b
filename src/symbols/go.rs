//! Go programs built with cgo (dynamically linked, so preloadable), found at load by the
//! symbol `_cgo_topofstack` that cgo exports. What rprof does differently for them:
//! - its signal handlers run on the alternate signal stack (SA_ONSTACK), as Go requires
//!   of every handler in its process: goroutine stacks are small and have no room for a
//!   signal frame;
//! - the dump signal is shared with Go's handler instead of given up (`signals`), since
//!   Go installs a handler for every signal whether or not the program asked for it;
//! - stack walks go on past `runtime.asmcgocall` into the Go frames that made a cgo call
//!   (`signal_safe::go_frames`), located here from the object's symbol table.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

use crate::signal_safe::go_frames;

static PRESENT: AtomicBool = AtomicBool::new(false);

/// Whether the process holds a Go runtime built with cgo.
pub fn present() -> bool {
    PRESENT.load(Ordering::Relaxed)
}

/// The loaded object that holds an address: its name ("" for the executable), load bias
/// and executable span.
struct Holder {
    addr: u64,
    found: Option<(String, u64, (u64, u64))>,
}

extern "C" fn find_holder(info: *mut libc::dl_phdr_info, _: usize, data: *mut libc::c_void) -> i32 {
    // SAFETY: dl_iterate_phdr passes a valid info and our `data` pointer.
    let (info, h) = unsafe { (&*info, &mut *(data as *mut Holder)) };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let bias = info.dlpi_addr;
    let text = phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0)
        .map(|p| {
            let s = bias.wrapping_add(p.p_vaddr);
            (s, s.wrapping_add(p.p_memsz))
        })
        .find(|&(s, e)| (s..e).contains(&h.addr));
    let Some(text) = text else {
        return 0;
    };
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: dlpi_name is a NUL-terminated string while the callback runs.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    h.found = Some((name, bias, text));
    1
}

/// At load: finds out whether this is a Go program with cgo and, if so, where
/// runtime.asmcgocall and runtime.cgocall are (a stripped binary has no symbols for them:
/// its C stacks then end at the cgo wrapper). Returns what was found, for the debug log.
pub fn init() -> Option<String> {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the global scope.
    let marker = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_cgo_topofstack".as_ptr()) };
    if marker.is_null() {
        return None;
    }
    PRESENT.store(true, Ordering::Relaxed);
    let mut h = Holder {
        addr: marker as u64,
        found: None,
    };
    // SAFETY: the callback only reads the phdr info the loader passes and writes `h`,
    // which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(find_holder), (&mut h as *mut Holder).cast()) };
    let (name, bias, text) = h.found?;
    let path = if name.is_empty() {
        "/proc/self/exe".to_string()
    } else {
        name
    };
    let ranges = crate::symbols::debuginfo::symbol_ranges(
        &path,
        &[
            "runtime.asmcgocall.abi0",
            "runtime.asmcgocall",
            "runtime.cgocall",
        ],
    );
    let shift = |r: (u64, u64)| (r.0.wrapping_add(bias), r.1.wrapping_add(bias));
    let asm = ranges[0].or(ranges[1]).map(shift);
    let cgocall = ranges[2].map(shift);
    match (asm, cgocall) {
        (Some(asm), Some(cgocall)) => {
            go_frames::set(asm, cgocall, text);
            Some(format!(
                "Go program: runtime.asmcgocall at {:#x}-{:#x}",
                asm.0, asm.1
            ))
        }
        _ => Some("Go program without runtime symbols: C stacks end at the cgo call".into()),
    }
}
