//! The io/ring.h shared-ring protocol and the xs_wire byte-stream ring, in safe Rust.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
