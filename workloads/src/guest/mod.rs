//! Guest-agent pieces: device-mapper, mounts, marks, serial.
