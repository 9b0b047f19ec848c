//! The ingest server: records over TCP, each acknowledged with its LSN once durable.
//!
//! # Wire protocol
//!
//! All integers little endian. A client sends request frames, each:
//!
//! ```text
//! offset  size  field
//!      0     4  len        payload length in bytes (at most the server's max_frame_bytes)
//!      4     4  crc32c     crc32c of the payload
//!      8   len  payload
//! ```
//!
//! For every request, in order, the server sends one 9-byte reply:
//!
//! ```text
//! offset  size  field
//!      0     1  status     0 ok, otherwise an ErrorCode
//!      1     8  lsn        the record's LSN when status is 0 (durable), else 0
//! ```
//!
//! Status codes: 1 frame too large, 2 malformed (payload checksum mismatch), 3 journal
//! poisoned, 4 I/O error, 5 too many connections, 6 server shutting down. After any
//! non-zero status the server closes the connection. A client may pipeline several frames;
//! replies come back in order.
//!
//! # Deadlines and the connection limit
//!
//! A connection that starts no frame within `idle_timeout` (from its accept or its last reply)
//! is closed without a reply. A frame, header and payload, must arrive completely within
//! `frame_timeout` of its first byte, else the connection is closed without a reply: bytes
//! trickled in extend neither deadline. When `max_connections` are open, a new connection
//! takes the place of the most stalled one (idle longest, or whose frame started longest ago)
//! if that one has been stalled for at least `evict_after`; otherwise the new connection is
//! answered Busy. A connection whose frame is being appended is never evicted, and an evicted
//! connection's frame never reaches the journal.
//!
//! Refusals (the 9-byte reply, then lingering until the client closes so that the reply is
//! not lost to a reset) are handled by one thread on nonblocking sockets, so neither the
//! accept loop nor a connection slot waits for a refused client.
//!
//! Each connection has its own thread that reads a whole frame into a per-connection buffer
//! (bounded by max_frame_bytes, grown as bytes arrive), appends it to the journal (one copy,
//! straight into the aligned staging buffer, checksummed on the way) and waits for the group
//! commit. A slow or dead client therefore holds only its own thread; its bytes reach the
//! journal only once complete. Memory is bounded by 2 x max_connections x max_frame_bytes
//! (evicted connections still finishing count twice at most) plus the staging bytes.
//!
//! # Stopping
//!
//! [`ServerHandle::shutdown`] and [`ServerHandle::close`] stop accepting, let appends in
//! progress finish and be acknowledged, and answer every frame that arrives afterwards (and
//! every idle connection) with status 6. [`serve`] does that on SIGTERM or SIGINT and then
//! closes the journal.

mod admission;
mod client;
mod connection;
mod handle;
mod protocol;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::{Journal, JournalError};

use admission::Refusal;
use connection::{Conn, FailureLog};

pub use client::{Client, ClientError};
pub use handle::{serve, ServerHandle};
pub use protocol::{ErrorCode, FRAME_HEADER_BYTES, REPLY_BYTES};

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (loopback by default).
    pub listen: String,
    /// Largest payload accepted.
    pub max_frame_bytes: usize,
    /// Largest number of simultaneous connections; a new one beyond it evicts a stalled one
    /// (see `evict_after`) or is answered Busy and closed.
    pub max_connections: usize,
    /// A connection that starts no frame for this long after its accept or its last reply
    /// is closed without a reply. Must be positive.
    pub idle_timeout: Duration,
    /// A frame (header and payload) must arrive completely within this long of its first
    /// byte, else the connection is closed without a reply. Must be positive. Also bounds
    /// the wait for a client to take a reply off the socket.
    pub frame_timeout: Duration,
    /// When the server is full, the most stalled connection is closed in favour of a new one
    /// if it has been idle, or in its current frame, for at least this long.
    /// `Duration::MAX` never evicts.
    pub evict_after: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: "127.0.0.1:7171".to_string(),
            max_frame_bytes: 1 << 20,
            max_connections: 128,
            idle_timeout: Duration::from_secs(30),
            frame_timeout: Duration::from_secs(10),
            evict_after: Duration::from_secs(1),
        }
    }
}

/// Errors of the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Opening the journal failed.
    #[error("open journal: {0}")]
    Journal(#[from] JournalError),
    /// Closing the journal after the server stopped failed.
    #[error("close journal: {0}")]
    Close(#[source] JournalError),
    /// Binding or accepting failed.
    #[error("{op} {addr}: {source}")]
    Net {
        /// Operation.
        op: &'static str,
        /// Address.
        addr: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Limits that cannot work.
    #[error("invalid server options: {0}")]
    InvalidOptions(String),
    /// Blocking or waiting for the stop signals failed.
    #[error("{op}: {source}")]
    Signal {
        /// Operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves data that is still structurally valid.
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// What the accept loop, the connection threads and the handle share.
struct Shared {
    journal: Arc<Journal>,
    options: ServeOptions,
    stopping: AtomicBool,
    conns: Mutex<Vec<Arc<Conn>>>,
    refusals: SyncSender<Refusal>,
    failures: Mutex<Vec<FailureLog>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn forget(&self, id: u64) {
        lock(&self.conns).retain(|conn| conn.id != id);
    }
}

/// Wrapper giving `Shared` a Debug implementation without exposing it.
struct SharedDebug(Shared);

impl std::fmt::Debug for SharedDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("connections", &lock(&self.0.conns).len())
            .finish()
    }
}
