//! The keystream behind the Gaussian pads: AES-256 in counter mode where
//! the CPU has AES instructions (every x86 server CPU, and Arm's with the
//! crypto extension), ChaCha12 elsewhere. Both are maintained RustCrypto /
//! `rand` implementations; nothing here is hand-written cryptography.
//!
//! Why AES: a pad batch draws one 64-bit word per Gaussian value, and the
//! words were most of a draw's time. With AES-NI, AES-256-CTR makes a word
//! in 1.1 ns on the dev VM against ChaCha12's 2.8 (`rand_chacha`'s AVX2
//! path) and 2.2 (the `chacha20` crate's).
//!
//! Every stream has its own 256-bit key drawn from the session's ChaCha20
//! generator, so its nonce is fixed at zero. A stream makes a few hundred
//! KiB (one chunk of a pad matrix), far below where AES-CTR's output
//! becomes distinguishable from random (about 2^64 blocks per key).

use aes::cipher::{KeyIvInit, StreamCipher};
use rand::{RngCore, SeedableRng};
use rand_chacha::{ChaCha12Rng, ChaCha20Rng};

use crate::pads::wipe::wipe;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// One bulk keystream. The AES key schedule is zeroized on drop (the
/// `zeroize` feature); `rand_chacha`'s state offers no zeroizing.
pub enum BulkStream {
    Aes(Box<Aes256Ctr>),
    ChaCha12(Box<ChaCha12Rng>),
}

/// Which generator [`BulkStream::keyed`] picks on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkKind {
    Aes256Ctr,
    ChaCha12,
}

impl BulkKind {
    /// AES-256-CTR where the CPU runs AES in hardware (a software AES is
    /// several times slower than ChaCha12), else ChaCha12.
    pub fn for_this_cpu() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("aes") {
            return Self::Aes256Ctr;
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("aes") {
            return Self::Aes256Ctr;
        }
        Self::ChaCha12
    }
}

impl BulkStream {
    /// A fresh stream of `kind` keyed from `seed`.
    pub fn keyed(kind: BulkKind, seed: &mut ChaCha20Rng) -> Self {
        let mut key = [0u8; 32];
        seed.fill_bytes(&mut key);
        let stream = match kind {
            BulkKind::Aes256Ctr => Self::Aes(Box::new(Aes256Ctr::new(&key.into(), &[0u8; 16].into()))),
            BulkKind::ChaCha12 => Self::ChaCha12(Box::new(ChaCha12Rng::from_seed(key))),
        };
        wipe(&mut key);
        stream
    }

    /// Overwrites `words` with the next words of the stream.
    pub fn fill(&mut self, words: &mut [u64]) {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(words);
        match self {
            Self::Aes(c) => {
                bytes.fill(0);
                c.apply_keystream(bytes);
            }
            Self::ChaCha12(r) => r.fill_bytes(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each byte value about equally often, and two streams keyed apart
    /// differ: a stream that is not keyed (or keyed alike) fails.
    #[test]
    fn streams_are_uniform_bytes_and_keyed_apart() {
        let mut seed = ChaCha20Rng::from_os_rng();
        for kind in [BulkKind::Aes256Ctr, BulkKind::ChaCha12] {
            let (mut a, mut b) = (BulkStream::keyed(kind, &mut seed), BulkStream::keyed(kind, &mut seed));
            let (mut wa, mut wb) = (vec![0u64; 1 << 16], vec![0u64; 1 << 16]);
            a.fill(&mut wa);
            b.fill(&mut wb);
            assert_ne!(wa, wb, "{kind:?}: two keys gave the same stream");
            let mut next = vec![0u64; 1 << 16];
            a.fill(&mut next);
            assert_ne!(wa, next, "{kind:?}: the stream repeated");
            let mut counts = [0f64; 256];
            bytemuck::cast_slice::<u64, u8>(&wa).iter().for_each(|&v| counts[v as usize] += 1.0);
            let expected = (8 << 16) as f64 / 256.0;
            let chi2: f64 = counts.iter().map(|c| (c - expected).powi(2) / expected).sum();
            // 255 degrees of freedom: mean 255, sd ~22.6; 400 is 6.4 sd out.
            assert!(chi2 < 400.0, "{kind:?}: byte χ² {chi2}");
        }
    }
}
