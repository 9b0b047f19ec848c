//! A blocking client of the ingest server.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use super::protocol::{decode_reply, encode_header, ErrorCode, REPLY_BYTES};
use crate::Lsn;

/// Errors of [`Client`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Network failure (including the server closing the connection).
    #[error("{op}: {source}")]
    Io {
        /// Operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The server refused the record.
    #[error("server refused the record: {0:?}")]
    Refused(ErrorCode),
    /// The reply makes no sense.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The payload is larger than a frame can carry.
    #[error("payload of {0} bytes cannot be framed")]
    TooLarge(usize),
}

/// A blocking client: one record at a time, or pipelined with `send` / `receive`.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
}

impl Client {
    /// Connects to a server.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).map_err(|source| ClientError::Io {
            op: "connect",
            source,
        })?;
        stream.set_nodelay(true).map_err(|source| ClientError::Io {
            op: "set nodelay",
            source,
        })?;
        Ok(Client { stream })
    }

    /// Sends a record and waits for its LSN (returned once the record is durable).
    pub fn append(&mut self, payload: &[u8]) -> Result<Lsn, ClientError> {
        self.send(payload)?;
        self.receive()
    }

    /// Sends a record without waiting for the reply.
    pub fn send(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        let len = u32::try_from(payload.len()).map_err(|_| ClientError::TooLarge(payload.len()))?;
        let header = encode_header(len, crc32c::crc32c(payload));
        self.stream
            .write_all(&header)
            .and_then(|()| self.stream.write_all(payload))
            .map_err(|source| ClientError::Io { op: "send", source })
    }

    /// Waits for the next reply.
    pub fn receive(&mut self) -> Result<Lsn, ClientError> {
        let mut reply = [0u8; REPLY_BYTES];
        self.stream
            .read_exact(&mut reply)
            .map_err(|source| ClientError::Io {
                op: "receive",
                source,
            })?;
        decode_reply(&reply).map_err(|status| match ErrorCode::from_status(status) {
            Some(code) => ClientError::Refused(code),
            None => ClientError::Protocol(format!("unknown status {status}")),
        })
    }

    /// The underlying stream (tests use it to send raw bytes).
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}
