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
//! replies come back in order. A connection idle (or stuck mid-frame) longer than
//! `idle_timeout` is closed without a reply.
//!
//! Each connection has its own thread that reads a whole frame into a per-connection buffer
//! (bounded by max_frame_bytes), appends it to the journal (one copy, straight into the
//! aligned staging buffer, checksummed on the way) and waits for the group commit. A slow
//! or dead client therefore holds only its own thread; its bytes reach the journal only once
//! complete. Memory is bounded by max_connections x max_frame_bytes plus the staging bytes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Journal, JournalError, JournalOptions, Lsn, OpenReport};

/// Bytes of a request frame header.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Bytes of a reply.
pub const REPLY_BYTES: usize = 9;

/// Why the server refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame's length exceeds the limit.
    FrameTooLarge = 1,
    /// The payload does not match its checksum.
    Malformed = 2,
    /// The journal refuses appends after an I/O error.
    Poisoned = 3,
    /// Another journal error.
    Io = 4,
    /// The connection limit is reached.
    Busy = 5,
    /// The server is stopping.
    ShuttingDown = 6,
}

impl ErrorCode {
    fn from_status(status: u8) -> Option<ErrorCode> {
        Some(match status {
            1 => ErrorCode::FrameTooLarge,
            2 => ErrorCode::Malformed,
            3 => ErrorCode::Poisoned,
            4 => ErrorCode::Io,
            5 => ErrorCode::Busy,
            6 => ErrorCode::ShuttingDown,
            _ => return None,
        })
    }
}

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (loopback by default).
    pub listen: String,
    /// Largest payload accepted.
    pub max_frame_bytes: usize,
    /// Largest number of simultaneous connections; more are answered Busy and closed.
    pub max_connections: usize,
    /// A connection that sends nothing for this long (or stalls mid-frame) is closed.
    pub idle_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: "127.0.0.1:7171".to_string(),
            max_frame_bytes: 1 << 20,
            max_connections: 128,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Errors of the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Opening the journal failed.
    #[error("open journal: {0}")]
    Journal(#[from] JournalError),
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
}

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

struct Shared {
    journal: Arc<Journal>,
    options: ServeOptions,
    stopping: AtomicBool,
    connections: AtomicUsize,
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<SharedDebug>,
    accept_thread: Option<JoinHandle<()>>,
    /// What opening the journal found.
    pub open_report: OpenReport,
}

/// Wrapper giving `Shared` a Debug implementation without exposing it.
struct SharedDebug(Shared);

impl std::fmt::Debug for SharedDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("connections", &self.0.connections.load(Ordering::Relaxed))
            .finish()
    }
}

impl ServerHandle {
    /// Opens the journal in `dir`, binds, and serves in background threads.
    pub fn start(
        dir: &Path,
        journal_options: JournalOptions,
        options: ServeOptions,
    ) -> Result<ServerHandle, ServerError> {
        if options.max_connections == 0 || options.max_frame_bytes == 0 {
            return Err(ServerError::InvalidOptions(
                "max_connections and max_frame_bytes must be positive".into(),
            ));
        }
        let (journal, open_report) = Journal::open(dir, journal_options)?;
        if options.max_frame_bytes > journal.max_payload_bytes() {
            return Err(ServerError::InvalidOptions(format!(
                "max_frame_bytes {} exceeds the journal's record limit {}",
                options.max_frame_bytes,
                journal.max_payload_bytes()
            )));
        }
        let listener = TcpListener::bind(&options.listen).map_err(|source| ServerError::Net {
            op: "bind",
            addr: options.listen.clone(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Net {
            op: "local address",
            addr: options.listen.clone(),
            source,
        })?;
        let shared = Arc::new(SharedDebug(Shared {
            journal: Arc::new(journal),
            options,
            stopping: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        }));
        let accept_shared = Arc::clone(&shared);
        let accept_thread = std::thread::spawn(move || accept_loop(listener, accept_shared));
        Ok(ServerHandle {
            addr,
            shared,
            accept_thread: Some(accept_thread),
            open_report,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Open connections now.
    pub fn connections(&self) -> usize {
        self.shared.0.connections.load(Ordering::SeqCst)
    }

    /// The journal served.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.shared.0.journal
    }

    /// Blocks until the accept loop ends (it ends only after `shutdown` from another handle
    /// clone or a fatal accept error).
    pub fn wait(mut self) {
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }

    /// Stops accepting, waits for connection threads to finish their current record.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.0.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.shared.0.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.accept_thread.is_some() {
            self.stop();
        }
    }
}

/// Runs the server in the foreground until the process is stopped.
pub fn serve(
    dir: &Path,
    journal_options: JournalOptions,
    options: ServeOptions,
) -> Result<(), ServerError> {
    let handle = ServerHandle::start(dir, journal_options, options)?;
    eprintln!("{}", handle.open_report);
    eprintln!("listening on {}", handle.local_addr());
    handle.wait();
    Ok(())
}

fn accept_loop(listener: TcpListener, shared: Arc<SharedDebug>) {
    for stream in listener.incoming() {
        let shared_ref = &shared.0;
        if shared_ref.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors and similar: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let previous = shared_ref.connections.fetch_add(1, Ordering::SeqCst);
        if previous >= shared_ref.options.max_connections {
            shared_ref.connections.fetch_sub(1, Ordering::SeqCst);
            refuse(stream, ErrorCode::Busy);
            continue;
        }
        let conn_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("ingest-conn".into())
            .spawn(move || {
                let shared = &conn_shared.0;
                let _ = handle_connection(stream, shared);
                shared.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared_ref.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Bytes read and dropped after a refusal, so that closing with unread input does not reset
/// the connection before the client has read the reply.
const DRAIN_LIMIT_BYTES: usize = 1 << 20;

fn refuse(mut stream: TcpStream, code: ErrorCode) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&encode_reply(Err(code)));
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    let deadline = Instant::now() + Duration::from_secs(1);
    while drained < DRAIN_LIMIT_BYTES && Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

fn encode_reply(reply: Result<Lsn, ErrorCode>) -> [u8; REPLY_BYTES] {
    let mut out = [0u8; REPLY_BYTES];
    match reply {
        Ok(lsn) => out[1..].copy_from_slice(&lsn.to_le_bytes()),
        Err(code) => out[0] = code as u8,
    }
    out
}

/// How often a blocked read wakes up to check for shutdown.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Reads exactly `buf.len()` bytes; Ok(false) on a clean EOF before the first byte.
fn read_full(
    stream: &mut TcpStream,
    buf: &mut [u8],
    shared: &Shared,
    allow_eof: bool,
) -> io::Result<bool> {
    let mut done = 0;
    let mut last_progress = Instant::now();
    while done < buf.len() {
        match stream.read(&mut buf[done..]) {
            Ok(0) => {
                if done == 0 && allow_eof {
                    return Ok(false);
                }
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            Ok(n) => {
                done += n;
                last_progress = Instant::now();
            }
            Err(err)
                if err.kind() == io::ErrorKind::WouldBlock
                    || err.kind() == io::ErrorKind::TimedOut
                    || err.kind() == io::ErrorKind::Interrupted =>
            {
                if shared.stopping.load(Ordering::SeqCst) && done == 0 {
                    return Ok(false);
                }
                if last_progress.elapsed() >= shared.options.idle_timeout {
                    return Err(io::Error::from(io::ErrorKind::TimedOut));
                }
            }
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

fn handle_connection(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(POLL_INTERVAL))?;
    stream.set_write_timeout(Some(shared.options.idle_timeout))?;
    stream.set_nodelay(true)?;
    let mut payload: Vec<u8> = Vec::new();
    loop {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        if !read_full(&mut stream, &mut header, shared, true)? {
            if shared.stopping.load(Ordering::SeqCst) {
                refuse(stream, ErrorCode::ShuttingDown);
            }
            return Ok(());
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > shared.options.max_frame_bytes {
            refuse(stream, ErrorCode::FrameTooLarge);
            return Ok(());
        }
        // Bounded by max_frame_bytes, checked above; the buffer is reused across frames.
        payload.resize(len, 0);
        read_full(&mut stream, &mut payload, shared, false)?;
        if crc32c::crc32c(&payload) != crc {
            refuse(stream, ErrorCode::Malformed);
            return Ok(());
        }
        let reply = match shared.journal.append_durable(&payload) {
            Ok(lsn) => Ok(lsn),
            Err(JournalError::Poisoned) => Err(ErrorCode::Poisoned),
            Err(_) => Err(ErrorCode::Io),
        };
        match reply {
            Ok(lsn) => stream.write_all(&encode_reply(Ok(lsn)))?,
            Err(code) => {
                refuse(stream, code);
                return Ok(());
            }
        }
    }
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
        let mut header = [0u8; FRAME_HEADER_BYTES];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
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
        let mut lsn = [0u8; 8];
        lsn.copy_from_slice(&reply[1..]);
        match reply[0] {
            0 => Ok(u64::from_le_bytes(lsn)),
            status => Err(match ErrorCode::from_status(status) {
                Some(code) => ClientError::Refused(code),
                None => ClientError::Protocol(format!("unknown status {status}")),
            }),
        }
    }

    /// The underlying stream (tests use it to send raw bytes).
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}
