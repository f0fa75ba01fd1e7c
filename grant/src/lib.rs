//! Grant references, the v1 grant-entry encoding and the grant operations drivers need.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
