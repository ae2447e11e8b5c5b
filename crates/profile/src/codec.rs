//! Wire encoding: protobuf via prost, gzip via flate2. Readers accept gzip or raw bytes,
//! detected by the gzip magic, as google/pprof's reader does.

use std::fmt;
use std::io::Read;

use prost::Message;

use crate::proto::Profile;

pub fn encode(p: &Profile) -> Vec<u8> {
    p.encode_to_vec()
}

pub fn encode_gzip(p: &Profile) -> Vec<u8> {
    gzip(&p.encode_to_vec())
}

/// Below this size a profile is stored in the gzip member uncompressed: making a
/// compressor zeroes about 300 KB of tables (as long as compressing some 50 KB takes), and
/// a dump writes four or five files, most of a few KB.
const STORE_BELOW: usize = 16 * 1024;
// One stored block holds at most 65,535 bytes.
const _: () = assert!(STORE_BELOW <= 1 << 16);

/// `data` as a gzip member: deflate's stored blocks when small, else compressed for speed
/// as Go's runtime/pprof does (`gzip.BestSpeed`): profiles are written while the program
/// runs or as it exits.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    if data.len() >= STORE_BELOW {
        return gzip_by_encoder(data);
    }
    // The header of GzEncoder's: no name, no time, XFL 0, OS unknown.
    let mut out = Vec::with_capacity(data.len() + 32);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    // One stored block (RFC 1951 3.2.4), final: BFINAL 1, BTYPE 00, LEN, NLEN, the bytes.
    let len = data.len() as u16;
    out.push(1);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn gzip_by_encoder(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
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

#[cfg(test)]
mod gzip_tests {
    use super::*;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn gzip_members_decode_to_their_data_stored_or_compressed() {
        // Empty, small and just below the threshold (stored), and above it (compressed),
        // with little repetition (a xorshift stream) or much.
        let mut x = 88172645463325252u64;
        let noise: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let text = b"rprof ".repeat(10_000);
        let below = &noise[..STORE_BELOW - 1];
        for data in [&[][..], b"x", below, &text, &noise] {
            let z = gzip(data);
            assert_eq!(&z[..3], &[0x1f, 0x8b, 8]);
            assert_eq!(gunzip(&z), data);
        }
        assert!(gzip(&text).len() < text.len() / 20);
        assert_eq!(gzip(below).len(), below.len() + 23);
    }
}
