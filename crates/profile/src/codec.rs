//! Wire encoding: protobuf via prost, gzip via flate2. Readers accept gzip or raw bytes,
//! detected by the gzip magic, as google/pprof's reader does.

use std::fmt;
use std::io::{Read, Write};

use prost::Message;

use crate::proto::Profile;

pub fn encode(p: &Profile) -> Vec<u8> {
    p.encode_to_vec()
}

pub fn encode_gzip(p: &Profile) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(&p.encode_to_vec());
    enc.finish().unwrap_or_default()
}

#[derive(Debug)]
pub enum DecodeError {
    Gzip(std::io::Error),
    Protobuf(prost::DecodeError),
    Empty,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Gzip(e) => write!(f, "bad gzip data: {e}"),
            DecodeError::Protobuf(e) => write!(f, "not a profile.proto message: {e}"),
            DecodeError::Empty => write!(f, "empty file"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes a profile from gzip-compressed or raw protobuf bytes.
pub fn decode(bytes: &[u8]) -> Result<Profile, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut raw)
            .map_err(DecodeError::Gzip)?;
        Profile::decode(raw.as_slice()).map_err(DecodeError::Protobuf)
    } else {
        Profile::decode(bytes).map_err(DecodeError::Protobuf)
    }
}
