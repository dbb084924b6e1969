//! What the worker may learn, and what a session did: the public channel
//! scales, the leakage bound, the report.
pub mod leakage;
pub mod report;
pub mod scales;
