//! Workloads: YAML specs, payload generation, the executor and the guest agent's pieces.

pub mod ack;
pub mod payload;
