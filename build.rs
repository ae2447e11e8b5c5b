//! Links the unwinder that Rust's std needs (`_Unwind_*`) from libgcc_eh.a into
//! librprof.so instead of loading libgcc_s.so.1 into every process: loading one more shared
//! object is a good part of what a short process pays at start. The symbols stay local
//! (`--exclude-libs`), so the program's own unwinder is never replaced.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-lib=static=gcc_eh");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,keep-text-section-prefix");
    }
}
