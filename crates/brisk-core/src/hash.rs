//! Hashing that gives the same result in every process and on every run.
//!
//! Key groups must agree between the subtask that partitions a record and the one that stores
//! its state, possibly in another process or after a restart, so `std`'s randomly seeded
//! hashers cannot be used. [`stable_hash`] feeds a key's `Hash` impl into a fixed-seed hasher.
//! The `Hash` impls of `std` types (integers, strings, tuples, vectors) write a deterministic
//! byte sequence, so their hashes are stable for a given Rust toolchain.

use std::hash::{Hash, Hasher};

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
const MUL: u64 = 0xA076_1D64_78BD_642F;

/// A fast, deterministic 64-bit hasher (multiply–rotate over 8-byte words).
#[derive(Clone, Debug)]
pub struct StableHasher {
    state: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher { state: SEED }
    }
}

impl StableHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = (self.state ^ word).wrapping_mul(MUL).rotate_left(29);
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Assembled byte by byte: a variable-length copy would call memcpy for a few bytes.
            let word = rest.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            // The length tag keeps "a" and "a\0" apart.
            self.mix(word ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.mix(i as u64);
        self.mix((i >> 64) as u64);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fmix64(self.state)
    }
}

/// The stable 64-bit hash of a value.
#[inline]
pub fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = StableHasher::default();
    value.hash(&mut hasher);
    hasher.finish()
}

/// MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
#[inline]
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// MurmurHash3 (32-bit) of one 32-bit word, made non-negative: spreads a key's hash code over
/// the key groups the way Flink's `MathUtils.murmurHash` does.
#[inline]
pub fn murmur_hash(code: u32) -> u32 {
    let mut k = code.wrapping_mul(0xcc9e_2d51);
    k = k.rotate_left(15).wrapping_mul(0x1b87_3593);
    let mut h = k.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    h ^= 4;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    let signed = h as i32;
    if signed >= 0 {
        signed as u32
    } else if signed != i32::MIN {
        signed.unsigned_abs()
    } else {
        0
    }
}

/// A 128-bit identifier derived from text, printed as 32 hex digits like Flink's operator ids.
pub fn id_128(text: &str) -> String {
    let mut a = StableHasher::default();
    text.hash(&mut a);
    let mut b = StableHasher { state: SEED ^ MUL };
    text.hash(&mut b);
    format!("{:016x}{:016x}", a.finish(), b.finish())
}

/// A new identifier of 32 hex digits (the shape of Flink's job, trigger and upload ids),
/// unique across processes and calls; `kind` tells what it names.
pub fn unique_id(kind: &str) -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static ISSUED: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // Randomly keyed, so that ids are not predictable from the time and process.
    let random = std::collections::hash_map::RandomState::new().hash_one(nanos);
    let issued = ISSUED.fetch_add(1, Ordering::Relaxed);
    id_128(&format!("{kind}/{}/{nanos}/{issued}/{random}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_are_32_hex_digits_and_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| unique_id("job")).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())));
    }

    #[test]
    fn stable_across_calls_and_sensitive_to_content() {
        assert_eq!(stable_hash("hello"), stable_hash(&"hello".to_string()));
        assert_ne!(stable_hash("hello"), stable_hash("hellp"));
        assert_ne!(stable_hash("a"), stable_hash("a\0"));
        assert_ne!(stable_hash(&(1u32, 2u32)), stable_hash(&(2u32, 1u32)));
    }

    #[test]
    fn known_values_do_not_drift() {
        // These pin the hash function: changing it silently would move every key to another
        // key group and make existing checkpoints unreadable.
        assert_eq!(stable_hash(&42i64), 0x86d4_a629_8dc3_6268);
        assert_eq!(stable_hash("brisk"), 0xf770_07e0_ca9b_54ae);
        assert_eq!(murmur_hash(0), 0x2362_f9de);
    }

    #[test]
    fn murmur_is_non_negative() {
        for code in [0u32, 1, 7, u32::MAX, 0x8000_0000, 12345678] {
            assert!((murmur_hash(code) as i32) >= 0);
        }
    }

    #[test]
    fn ids_are_32_hex_digits() {
        let id = id_128("Source: numbers");
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, id_128("Source: letters"));
    }
}
