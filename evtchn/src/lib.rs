//! Event-channel ports, the operations drivers need, and a throttling policy for event storms.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
