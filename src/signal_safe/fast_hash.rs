//! A fast hash for rprof's own tables (heap buckets, live blocks, slots, pinned ids), whose
//! keys are addresses and stacks of addresses: the sampled paths hash on every call, and
//! std's SipHash took a quarter of their instructions. No protection against chosen keys
//! is needed: the keys are the program's own addresses.
use std::hash::{BuildHasher, Hasher};

#[derive(Clone, Copy, Default)]
pub struct FastHash;

impl BuildHasher for FastHash {
    type Hasher = WordHasher;
    fn build_hasher(&self) -> WordHasher {
        WordHasher(0)
    }
}

/// Multiply-rotate over 64-bit words (as rustc's FxHasher).
pub struct WordHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl WordHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(K);
    }
}

impl Hasher for WordHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.add(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last) ^ (rest.len() as u64) << 56);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The product's low bits are weak (aligned addresses make them zero); hashbrown
        // picks buckets by the low bits, so the strong high bits are rotated down.
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn aligned_addresses_spread_over_the_low_bits() {
        let low: HashSet<u64> = (0..4096u64)
            .map(|i| {
                let mut h = FastHash.build_hasher();
                h.write_usize(0x5555_0000_0000 + i as usize * 4096);
                h.finish() & 0xfff
            })
            .collect();
        // 4096 page-aligned addresses into 4096 buckets: a fair hash fills about 63 %.
        assert!(low.len() > 2300, "{} distinct", low.len());
    }
}
