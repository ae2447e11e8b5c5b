//! profile.proto for rprof: the messages, a builder that interns as it goes (as Go's
//! `runtime/pprof.profileBuilder` does), gzip encoding, gzip-or-raw decoding, a validity
//! check mirroring google/pprof's `CheckValid`, and read-side helpers for tools and tests.
//!
//! This crate is safe Rust only; both the interposer (librprof.so) and the `rprof` command use it.
#![forbid(unsafe_code)]

mod builder;
mod codec;
mod delta;
mod merge;
mod proto;
pub mod push;
mod view;

pub use builder::{Builder, LineInfo, MappingInfo};
pub use codec::{decode, encode, encode_gzip, gzip, DecodeError};
pub use delta::{subtract, subtract_keeping};
pub use merge::merge;
pub use proto::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};
pub use view::{check_valid, Frame};

/// Sample-type and unit names, spelled as Go's runtime/pprof writes them.
pub mod names {
    pub const SAMPLES: &str = "samples";
    pub const COUNT: &str = "count";
    pub const CPU: &str = "cpu";
    pub const NANOSECONDS: &str = "nanoseconds";
    pub const ALLOC_OBJECTS: &str = "alloc_objects";
    pub const ALLOC_SPACE: &str = "alloc_space";
    pub const INUSE_OBJECTS: &str = "inuse_objects";
    pub const INUSE_SPACE: &str = "inuse_space";
    pub const SPACE: &str = "space";
    pub const BYTES: &str = "bytes";
    pub const CONTENTIONS: &str = "contentions";
    pub const DELAY: &str = "delay";
    /// Synthetic frame under which samples the library could not keep are counted.
    pub const LOST_SAMPLES_FRAME: &str = "rprof::lost_samples";
    /// Synthetic frame appended where a stack was cut at the maximum depth.
    pub const TRUNCATED_FRAME: &str = "rprof::truncated";
}
