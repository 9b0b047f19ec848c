//! Messages between the guest agent and the host over the serial console.
