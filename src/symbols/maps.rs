//! The process's executable mappings (/proc/self/maps) and the GNU build ID of each loaded
//! object (read from its PT_NOTE segments in memory through dl_iterate_phdr).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// One executable, file-backed (or vdso) mapping.
#[derive(Clone, Debug)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub path: String,
    pub build_id: String,
}

/// `/proc/thread-self/<name>`, which reads through the calling thread: once the main
/// thread has exited (it called pthread_exit), `/proc/self/maps` of the zombie leader is
/// empty. Falls back to `/proc/self` on kernels before 3.17.
pub fn proc_path(name: &str) -> std::path::PathBuf {
    let t = std::path::Path::new("/proc/thread-self").join(name);
    if t.exists() {
        t
    } else {
        std::path::Path::new("/proc/self").join(name)
    }
}

/// The text of a /proc file of this thread (`proc_path`), read in one go: std's
/// `read_to_string` learns nothing from a /proc file's size (0) and reads it by doubling
/// probes from 32 bytes.
pub fn read_proc(name: &str) -> Option<String> {
    use std::io::Read;
    let mut text = String::with_capacity(64 * 1024);
    std::fs::File::open(proc_path(name))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// What one read of /proc/self/maps tells the symbolizer.
#[derive(Default)]
pub struct Mappings {
    /// Executable file mappings, the main program's first.
    pub files: Vec<MapEntry>,
    /// Executable mappings of no file (a JIT's code space: anonymous, or a memfd).
    pub jit_code: Vec<(u64, u64)>,
    /// The paths of mapped files named `jit-<pid>.dump` (a JIT's jitdump).
    pub jitdumps: Vec<String>,
}

/// One read of /proc/self/maps: the executable file mappings (the main program's first:
/// pprof takes the first mapping as the main binary), JIT code regions and jitdump files.
pub fn read_mappings() -> Mappings {
    let Some(text) = read_proc("maps") else {
        return Mappings::default();
    };
    let objects = loaded_objects();
    let exe = std::fs::read_link(proc_path("exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut out: Vec<MapEntry> = text.lines().filter_map(parse_line).collect();
    for m in &mut out {
        if let Some(o) = objects
            .iter()
            .find(|o| o.ranges.iter().any(|&(s, e)| m.start < e && s < m.end))
        {
            m.build_id.clone_from(&o.build_id);
        }
    }
    out.sort_by_key(|m| m.path != exe);
    let jitdump = format!("/jit-{}.dump", std::process::id());
    Mappings {
        files: out,
        jit_code: anonymous_code(&text),
        jitdumps: text
            .lines()
            .filter_map(|l| l.find('/').map(|i| &l[i..]))
            .filter(|p| p.ends_with(&jitdump))
            .map(str::to_owned)
            .collect(),
    }
}

/// The kernel's vDSO, an ELF image mapped into every process for its whole life: its bytes
/// in memory (it has no file to read).
pub fn vdso_image() -> Option<&'static [u8]> {
    // SAFETY: getauxval only reads the auxiliary vector.
    let start = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
    if start == 0 {
        return None;
    }
    let text = read_proc("maps")?;
    let m = text
        .lines()
        .filter_map(parse_line)
        .find(|m| m.path == "[vdso]" && m.start == start)?;
    // SAFETY: [start, end) is the vDSO mapping, readable and never unmapped.
    Some(unsafe { std::slice::from_raw_parts(start as *const u8, (m.end - m.start) as usize) })
}

/// The executable mappings of no file (a JIT's code space: anonymous, or a memfd), from
/// the text of /proc/self/maps.
fn anonymous_code(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            let path = f.nth(3).unwrap_or("");
            let anonymous =
                path.is_empty() || path.starts_with("[anon") || path.starts_with("/memfd:");
            if !perms.contains('x') || !anonymous {
                return None;
            }
            let (s, e) = range.split_once('-')?;
            Some((
                u64::from_str_radix(s, 16).ok()?,
                u64::from_str_radix(e, 16).ok()?,
            ))
        })
        .collect()
}

fn parse_line(line: &str) -> Option<MapEntry> {
    let mut f = line.split_ascii_whitespace();
    let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
    if !perms.contains('x') {
        return None;
    }
    let (_dev, _inode) = (f.next()?, f.next()?);
    let path = f.collect::<Vec<_>>().join(" ");
    if path.is_empty() || (path.starts_with('[') && path != "[vdso]") {
        return None;
    }
    let (s, e) = range.split_once('-')?;
    Some(MapEntry {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        path,
        build_id: String::new(),
    })
}

/// The executable segments of every loaded object (the vDSO included), and the span of
/// librprof.so's own, from the loader's list in memory: no /proc read, no system call.
pub fn loaded_code() -> (Vec<(u64, u64)>, (u64, u64)) {
    let mut objects: Vec<Vec<(u64, u64)>> = Vec::new();
    // SAFETY: the callback only reads the phdr info the loader passes and pushes to
    // `objects`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(on_object_code),
            (&mut objects as *mut Vec<Vec<(u64, u64)>>).cast(),
        )
    };
    let here = loaded_code as *const () as u64;
    let own = objects
        .iter()
        .find(|r| r.iter().any(|&(s, e)| (s..e).contains(&here)))
        .map_or((0, 0), |r| {
            r.iter()
                .fold((u64::MAX, 0), |(s, e), &(a, b)| (s.min(a), e.max(b)))
        });
    (objects.concat(), own)
}

extern "C" fn on_object_code(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut libc::c_void,
) -> i32 {
    // SAFETY: dl_iterate_phdr passes a valid info and our `data` pointer.
    let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<Vec<(u64, u64)>>)) };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let code = phdrs
        .iter()
        .filter(|ph| ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0)
        .map(|ph| {
            let start = info.dlpi_addr.wrapping_add(ph.p_vaddr);
            (start, start.wrapping_add(ph.p_memsz))
        })
        .collect();
    out.push(code);
    0
}

/// The loader's counts of objects loaded and unloaded so far (`dlpi_adds`, `dlpi_subs`):
/// unchanged, no object was mapped or unmapped by the loader meanwhile.
pub fn loader_generation() -> (u64, u64) {
    let mut out = (0u64, 0u64);
    // SAFETY: the callback only reads two fields of the info the loader passes into `out`,
    // which outlives the call, and stops at the first object.
    unsafe { libc::dl_iterate_phdr(Some(on_first_object), (&mut out as *mut (u64, u64)).cast()) };
    out
}

extern "C" fn on_first_object(
    info: *mut libc::dl_phdr_info,
    size: usize,
    data: *mut libc::c_void,
) -> i32 {
    // The counts are there when the loader's info is at least this long (glibc ≥ 2.4).
    let needed = std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + 8;
    if size >= needed {
        // SAFETY: dl_iterate_phdr passes a valid info of `size` bytes and our `data`.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut (u64, u64))) };
        *out = (info.dlpi_adds, info.dlpi_subs);
    }
    1
}

struct LoadedObject {
    ranges: Vec<(u64, u64)>,
    build_id: String,
}

fn loaded_objects() -> Vec<LoadedObject> {
    let mut out: Vec<LoadedObject> = Vec::new();
    // SAFETY: the callback only reads the phdr info the loader passes and pushes to `out`,
    // which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(on_object), (&mut out as *mut Vec<LoadedObject>).cast()) };
    out
}

extern "C" fn on_object(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut libc::c_void,
) -> i32 {
    // SAFETY: dl_iterate_phdr passes a valid info and our `data` pointer.
    let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<LoadedObject>)) };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let base = info.dlpi_addr;
    let mut obj = LoadedObject {
        ranges: Vec::new(),
        build_id: String::new(),
    };
    for ph in phdrs {
        let start = base.wrapping_add(ph.p_vaddr);
        match ph.p_type {
            libc::PT_LOAD => obj.ranges.push((start, start.wrapping_add(ph.p_memsz))),
            libc::PT_NOTE if obj.build_id.is_empty() => {
                // SAFETY: a PT_NOTE segment of a loaded object is mapped for p_memsz bytes.
                let notes =
                    unsafe { std::slice::from_raw_parts(start as *const u8, ph.p_memsz as usize) };
                obj.build_id = gnu_build_id(notes).unwrap_or_default();
            }
            _ => {}
        }
    }
    out.push(obj);
    0
}

/// Finds NT_GNU_BUILD_ID in a run of ELF notes; returns it in lower-case hex.
fn gnu_build_id(mut notes: &[u8]) -> Option<String> {
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let word =
            |i: usize| u32::from_ne_bytes(notes[i..i + 4].try_into().unwrap_or([0; 4])) as usize;
        let (namesz, descsz, ty) = (word(0), word(4), word(8));
        let name_end = 12 + align4(namesz);
        let desc_end = name_end + align4(descsz);
        if desc_end > notes.len() {
            return None;
        }
        if ty == 3 && notes.get(12..12 + namesz) == Some(b"GNU\0") {
            let desc = &notes[name_end..name_end + descsz];
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let hex = desc
                .iter()
                .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            return Some(hex.map(char::from).collect());
        }
        notes = &notes[desc_end..];
    }
    None
}

const NOT_LOOKED_UP: usize = usize::MAX;
static MALLINFO2: AtomicUsize = AtomicUsize::new(NOT_LOOKED_UP);
static MALLCTL: AtomicUsize = AtomicUsize::new(NOT_LOOKED_UP);

/// Makes the lookups in the loader a dump needs (which take the loader's lock), so that
/// none is made while the symbolizer is held (`symbolize::lock_shared`).
pub fn prime_lookups() {
    let _ = crate::signal_safe::real::malloc_is_glibc();
    symbol_once(&MALLINFO2, c"mallinfo2");
    symbol_once(&MALLCTL, c"mallctl");
}

/// `name` in the program's lookup scope (null: none), looked up once and kept: the
/// allocator does not change, and after the first dump no lookup (which takes the loader's
/// lock) is made again.
fn symbol_once(kept: &AtomicUsize, name: &std::ffi::CStr) -> *mut libc::c_void {
    match kept.load(Ordering::Relaxed) {
        NOT_LOOKED_UP => {}
        p => return p as *mut libc::c_void,
    }
    // SAFETY: dlsym with a NUL-terminated name.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    kept.store(p as usize, Ordering::Relaxed);
    p
}

/// glibc's mallinfo2 as [arena, hblkhd, uordblks, fordblks, keepcost], when the program's
/// allocator is glibc's (glibc ≥ 2.33).
pub fn glibc_mallinfo2() -> Option<[usize; 5]> {
    if !crate::signal_safe::real::malloc_is_glibc() {
        return None;
    }
    #[repr(C)]
    struct Mallinfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    let f = symbol_once(&MALLINFO2, c"mallinfo2");
    if f.is_null() {
        return None;
    }
    // SAFETY: glibc's mallinfo2 takes no arguments and returns this struct by value.
    let m = unsafe { std::mem::transmute::<*mut libc::c_void, extern "C" fn() -> Mallinfo2>(f)() };
    Some([m.arena, m.hblkhd, m.uordblks, m.fordblks, m.keepcost])
}

thread_local! {
    /// jemalloc's statistics as read for this thread by another (`preset_jemalloc_stats`).
    static PRESET_JEMALLOC: std::cell::Cell<Option<Option<[u64; 4]>>> =
        const { std::cell::Cell::new(None) };
}

/// Makes `jemalloc_stats` on this thread answer `stats` (read by a long-lived thread)
/// rather than call jemalloc from this short-lived one.
pub fn preset_jemalloc_stats(stats: Option<[u64; 4]>) {
    PRESET_JEMALLOC.with(|p| p.set(Some(stats)));
}

/// jemalloc's statistics [allocated, active, mapped, retained] in bytes, when the
/// program's allocator is jemalloc (its `mallctl`, after refreshing its `epoch`).
pub fn jemalloc_stats() -> Option<[u64; 4]> {
    if let Some(preset) = PRESET_JEMALLOC.with(|p| p.get()) {
        return preset;
    }
    type Mallctl = unsafe extern "C" fn(
        *const libc::c_char,
        *mut libc::c_void,
        *mut usize,
        *mut libc::c_void,
        usize,
    ) -> libc::c_int;
    if crate::signal_safe::real::malloc_is_glibc() {
        return None;
    }
    let f = symbol_once(&MALLCTL, c"mallctl");
    if f.is_null() {
        return None;
    }
    // SAFETY: jemalloc's mallctl has this signature.
    let mallctl = unsafe { std::mem::transmute::<*mut libc::c_void, Mallctl>(f) };
    let mut epoch: u64 = 1;
    let mut len = std::mem::size_of::<u64>();
    // SAFETY: "epoch" reads and writes a u64 of the length given.
    unsafe {
        mallctl(
            c"epoch".as_ptr(),
            (&mut epoch as *mut u64).cast(),
            &mut len,
            (&mut epoch as *mut u64).cast(),
            len,
        )
    };
    let mut out = [0u64; 4];
    for (v, name) in out.iter_mut().zip([
        c"stats.allocated",
        c"stats.active",
        c"stats.mapped",
        c"stats.retained",
    ]) {
        let mut n: usize = 0;
        let mut len = std::mem::size_of::<usize>();
        // SAFETY: these statistics are size_t values read into `n`.
        if unsafe {
            mallctl(
                name.as_ptr(),
                (&mut n as *mut usize).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        } == 0
        {
            *v = n as u64;
        }
    }
    Some(out)
}

/// (VmRSS, VmHWM) of the process in bytes, from /proc/self/status.
pub fn rss() -> Option<(u64, u64)> {
    let status = read_proc("status")?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let m = parse_line("7f00-7f80 r-xp 00001000 08:01 42 /usr/lib/libc.so.6").unwrap();
        assert_eq!((m.start, m.end, m.offset), (0x7f00, 0x7f80, 0x1000));
        assert_eq!(m.path, "/usr/lib/libc.so.6");
        assert!(parse_line("7f00-7f80 r--p 00000000 08:01 42 /usr/lib/libc.so.6").is_none());
        assert!(parse_line("7f00-7f80 rw-p 00000000 00:00 0 [heap]").is_none());
        assert!(parse_line("7f00-7f80 r-xp 00000000 00:00 0 [vdso]").is_some());
    }

    #[test]
    fn finds_own_build_id() {
        let maps = read_mappings().files;
        assert!(!maps.is_empty());
        // Debian's toolchain links every object with a build ID; the test binary has one.
        assert!(maps[0].build_id.len() >= 16, "{:?}", maps[0]);
    }
}
