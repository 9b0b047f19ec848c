//! Every `unsafe` block of the crate, behind safe types: the guest agent's system calls
//! (`guest`) and the libyaml event reader (`yaml`).

#![allow(unsafe_code)]

pub(crate) mod guest;
pub(crate) mod yaml;
