//! # INSECURE reference schemes — for the attack suite ONLY
//!
//! **None of these protects the client's data.** Each one is a masking
//! that looks plausible and is broken by the attacks of DESIGN §2 (span
//! membership, nearest neighbour, subspace projection). They exist so the
//! privacy benchmark can show that its attacks work (≥ 95 % token recovery)
//! before its score on ReMO means anything. They all report
//! `secure() == false`, and the serving path cannot construct them
//! (`ServingScheme` has no variant for them).

pub mod lowrank;
pub mod lu;
pub mod mix;
pub mod permute;

pub use lowrank::LowRankNoise;
pub use mix::RowMixing;
pub use permute::RowPermutation;
