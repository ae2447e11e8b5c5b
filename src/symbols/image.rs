//! An object file's bytes, mapped read-only in place (or the vDSO in memory), and the
//! reader the DWARF parser uses over them.
#![allow(unsafe_code)]

pub(super) type Reader = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// The bytes of an object file: a read-only private mapping of the whole file (unmapped on
/// drop), or the vDSO in memory.
pub(super) struct Image {
    ptr: *const u8,
    len: usize,
    mapped: bool,
}

impl Image {
    pub(super) fn map(path: &str) -> Option<Image> {
        let file = std::fs::File::open(path).ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: maps `len` bytes of an open file read-only; the fd may close afterwards.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then(|| Image {
            ptr: ptr as *const u8,
            len,
            mapped: true,
        })
    }

    pub(super) fn vdso() -> Option<Image> {
        let bytes = crate::symbols::maps::vdso_image()?;
        Some(Image {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
            mapped: false,
        })
    }

    /// The file's bytes. The `'static` is a promise kept by `ObjectInfo`: what borrows
    /// them (the parsed DWARF) is dropped before the image.
    pub(super) fn bytes(&self) -> &'static [u8] {
        // SAFETY: `len` readable bytes at `ptr`, mapped until `self` is dropped (or the
        // vDSO, never unmapped).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Gives back the pages wholly inside `range` (read once, not needed soon): they leave
    /// the RSS and are read from the file again if touched.
    pub(super) fn release(&self, range: std::ops::Range<usize>) {
        let page = 4096;
        let (start, end) = (
            (range.start + page - 1) & !(page - 1),
            range.end & !(page - 1),
        );
        if !self.mapped || start >= end || end > self.len {
            return;
        }
        // SAFETY: a page-aligned span inside our own read-only private mapping of a file;
        // MADV_DONTNEED only drops clean pages, which are read from the file again.
        unsafe {
            libc::madvise(
                self.ptr.add(start) as *mut libc::c_void,
                end - start,
                libc::MADV_DONTNEED,
            )
        };
    }
}

// SAFETY: the image is read-only memory owned by this value; any thread may read it.
unsafe impl Send for Image {}

impl Drop for Image {
    fn drop(&mut self) {
        if self.mapped {
            // SAFETY: unmaps exactly the mapping made in `map`.
            unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
        }
    }
}
