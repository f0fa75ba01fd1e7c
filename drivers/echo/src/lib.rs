//! The echo test device: a minimal request/response PV protocol, front and back engines.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
