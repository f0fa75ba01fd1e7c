//! XenStore wire protocol and client, the XenBus state machine, feature negotiation, and the traits kernel glue implements.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
