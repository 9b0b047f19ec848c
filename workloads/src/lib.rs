//! Workloads: YAML specs, payload generation, the executor and the guest agent's pieces.

pub mod ack;
pub mod executor;
pub mod generate;
pub mod guest;
pub mod payload;
pub mod program;
pub mod promises;
pub mod protocol;
pub mod spec;
pub mod stack;
mod sys;
