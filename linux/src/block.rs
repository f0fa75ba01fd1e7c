// SPDX-License-Identifier: GPL-2.0

//! The block layer: a disk a frontend serves ([`mq`]) and a disk a backend uses ([`bio`]).

pub mod bio;
pub mod mq;
