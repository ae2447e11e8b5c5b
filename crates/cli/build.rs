//! Embeds librprof.so in the `rprof` command, so that `cargo install --path crates/cli`
//! alone gives an `rprof run` that works anywhere: the library of the same checkout is
//! built (release, in a target directory of this build's own) and its bytes included.
//!
//! Not embedded (the command then finds the library beside itself or where a package put
//! it) when `RPROF_EMBED=0` (the Debian package, which installs the library on the
//! linker's path, and the suite's workspace build, whose library lies beside the command),
//! or when the library's sources are not there (a crate published alone).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=RPROF_EMBED");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let embedded = out.join("embedded.rs");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("dir"));
    let root = manifest_dir.join("../..");
    let wanted = std::env::var("RPROF_EMBED").map_or(true, |v| v != "0");
    let library_sources = root.join("src/lib.rs").is_file() && root.join("Cargo.toml").is_file();
    if !wanted || !library_sources {
        std::fs::write(&embedded, "pub const LIBRARY: Option<&[u8]> = None;\n").unwrap();
        return;
    }
    for watched in [
        "src",
        "Cargo.toml",
        "Cargo.lock",
        "crates/profile/src",
        "crates/config/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let lib = build_library(&root, &out.join("library-target"));
    std::fs::write(
        &embedded,
        format!(
            "pub const LIBRARY: Option<&[u8]> = Some(include_bytes!({:?}));\n",
            lib.display().to_string()
        ),
    )
    .unwrap();
}

/// `cargo build --release -p rprof` of the checkout at `root` into `target`: the library's
/// path. A target directory of its own: the one this build runs in is locked by it.
fn build_library(root: &Path, target: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "rprof", "--target-dir"])
        .arg(target)
        // What the outer cargo set for itself (clippy's driver, its target directory)
        // is not for this build.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("running cargo to build librprof.so");
    assert!(
        status.success(),
        "building librprof.so for embedding failed"
    );
    target.join("release/librprof.so")
}
