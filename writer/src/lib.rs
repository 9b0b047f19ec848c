//! The durable-write engine.
