//! Addresses to functions, files and lines, with inlined calls, using the debug info of
//! the loaded objects (backtrace's gimli symbolizer; C++ and Rust names demangled).
//! Runs outside signal context only, on the collector thread or at exit.

use std::collections::HashMap;

use rprof_profile::LineInfo;

#[derive(Default)]
pub struct Symbolizer {
    cache: HashMap<u64, Vec<LineInfo>>,
}

impl Symbolizer {
    /// The lines at `addr`, innermost inlined call first; empty when nothing is known.
    pub fn lines(&mut self, addr: u64) -> &[LineInfo] {
        self.cache.entry(addr).or_insert_with(|| resolve(addr))
    }

    /// Forgets cached results (objects may have been unloaded and others loaded there).
    pub fn clear(&mut self) {
        self.cache.clear();
    }
}

fn resolve(addr: u64) -> Vec<LineInfo> {
    let mut out = Vec::new();
    backtrace::resolve(addr as *mut std::ffi::c_void, |sym| {
        let Some(name) = sym.name() else { return };
        out.push(LineInfo {
            function: format!("{name:#}"),
            system_name: String::from_utf8_lossy(name.as_bytes()).into_owned(),
            filename: sym
                .filename()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            line: sym.lineno().map_or(0, i64::from),
        });
    });
    out
}
