//! XenStore wire protocol and client, the XenBus state machine, feature negotiation, the device platform, and the traits kernel glue implements.
//!
//! Everything here is `no_std`, free of `unsafe` and of allocation, so the same source builds
//! into kernel modules (by Kbuild) and into host tests. Input from a peer — xenstored, or the
//! other end of a split driver writing into XenStore — is parsed into validated types before it
//! is acted on; malformed input yields a typed error, never a panic.
//!
//! * [`xs`]: XenStore messages, decoder, client, and the [`xs::XenStore`] trait.
//! * [`xenbus`]: the XenBus state machine as a pure function for frontends and backends.
//! * [`feature`]: typed feature negotiation for blkif, netif and vscsiif.
//! * [`hypercall`]: the [`hypercall::Hypercalls`] trait (memory reservation for the balloon).
//! * [`platform`]: the device platform every engine is generic over beyond grants and event
//!   channels (page bytes, page allocation, ring memory) and what its event handler reports
//!   ([`platform::Progress`]).
//! * [`slots`]: a front's request slots, wire ids `generation << 32 | slot` and the check of
//!   the ids a backend answers with.
//! * [`glue`]: every trait the kernel glue implements, re-exported in one place.
//! * [`num`]: strict decimal parsing and formatting.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

pub mod feature;
pub mod glue;
pub mod hypercall;
pub mod num;
pub mod platform;
pub mod slots;
pub mod xenbus;
pub mod xs;
