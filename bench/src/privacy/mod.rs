//! The privacy attack suite (`bench privacy`, docs/DESIGN.md §2, §6): reads what
//! the untrusted worker recorded (or simulates it per scheme), runs the
//! attacks a worker that knows the weights, the protocol and the public
//! parameters can mount, and scores how many tokens they recover.
//! Formats and attacks: README.md beside this file.

pub mod attack_row;
pub mod attacks;
pub mod candidates;
pub mod cli;
pub mod dict_scan;
pub mod engine_candidates;
pub mod fast_exp;
pub mod gate;
pub mod hadamard;
pub mod linalg;
pub mod mat;
pub mod noise;
pub mod npy;
pub mod null_twin;
pub mod outputs;
pub mod plot;
pub mod recording;
pub mod report;
pub mod runner;
pub mod score;
pub mod steps;
pub mod synth;
pub mod tokens;

pub use cli::{run, Args};
