//! Content hashes of KV blocks for the prefix cache: block `i`'s hash
//! covers the cache salt and every token up to its end, so equal hashes
//! mean equal K/V (the same tokens at the same positions) for the same
//! client. SHA-256, so that no request can be made to collide with
//! another's blocks.

use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockHash([u8; 32]);

/// Who may share cached blocks: requests with the same salt only (one
/// client's timing must not tell it whether another sent a prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSalt([u8; 32]);

impl CacheSalt {
    pub fn new(client: &[u8]) -> Self {
        Self(Sha256::new().chain_update(b"talaria prefix cache salt v1\n").chain_update(client).finalize().into())
    }
}

/// Extends `hashes` with the hashes of the full blocks of `tokens` it does
/// not cover yet.
pub fn extend_block_hashes(salt: &CacheSalt, tokens: &[u32], block_size: usize, hashes: &mut Vec<BlockHash>) {
    let full = tokens.len() / block_size;
    while hashes.len() < full {
        let i = hashes.len();
        let mut h = Sha256::new();
        h.update(salt.0);
        if let Some(parent) = hashes.last() {
            h.update(parent.0);
        }
        for t in &tokens[i * block_size..(i + 1) * block_size] {
            h.update(t.to_le_bytes());
        }
        hashes.push(BlockHash(h.finalize().into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(salt: &[u8], tokens: &[u32]) -> Vec<BlockHash> {
        let mut out = Vec::new();
        extend_block_hashes(&CacheSalt::new(salt), tokens, 4, &mut out);
        out
    }

    #[test]
    fn a_block_hash_covers_the_salt_and_the_whole_prefix() {
        let a = hashes(b"k", &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(a.len(), 2, "only full blocks");
        assert_eq!(a, hashes(b"k", &[1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(hashes(b"k", &[1, 2, 3, 4, 5, 6, 7, 9])[0], a[0]);
        assert_ne!(hashes(b"k", &[1, 2, 3, 4, 5, 6, 7, 9])[1], a[1]);
        assert_ne!(hashes(b"k", &[0, 2, 3, 4, 5, 6, 7, 8])[1], a[1], "a block's hash depends on the blocks before it");
        assert_ne!(hashes(b"other", &[1, 2, 3, 4])[0], a[0], "another client's salt");
        let mut grown = hashes(b"k", &[1, 2, 3, 4]);
        extend_block_hashes(&CacheSalt::new(b"k"), &[1, 2, 3, 4, 5, 6, 7, 8], 4, &mut grown);
        assert_eq!(grown, a, "incremental");
    }
}
