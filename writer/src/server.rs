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

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::mem::Discriminant;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves data that is still structurally valid.
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a frame.
    Idle,
    /// Between the first and the last byte of a frame.
    Reading,
    /// The frame is complete and being appended: never evicted.
    Appending,
}

#[derive(Debug)]
struct ConnState {
    phase: Phase,
    /// When the phase began (the accept or last reply for Idle, the first byte for Reading).
    since: Instant,
    /// Closed to make room; its frame, if any, must not be appended.
    evicted: bool,
}

/// A connection as the accept loop sees it, to pick and close one to evict.
#[derive(Debug)]
struct Conn {
    id: u64,
    stream: Arc<TcpStream>,
    state: Mutex<ConnState>,
}

impl Conn {
    fn is_evicted(&self) -> bool {
        lock(&self.state).evicted
    }

    /// Moves to `phase` starting now; false if the connection was evicted.
    fn enter(&self, phase: Phase) -> bool {
        let mut state = lock(&self.state);
        if state.evicted {
            return false;
        }
        state.phase = phase;
        state.since = Instant::now();
        true
    }

    /// How long it has been idle or in its current frame; None when not evictable.
    fn stalled_for(&self, now: Instant) -> Option<Duration> {
        let state = lock(&self.state);
        (!state.evicted && state.phase != Phase::Appending)
            .then(|| now.saturating_duration_since(state.since))
    }

    /// Marks the connection evicted and wakes its thread; false if it started appending.
    fn evict(&self) -> bool {
        {
            let mut state = lock(&self.state);
            if state.evicted || state.phase == Phase::Appending {
                return false;
            }
            state.evicted = true;
        }
        // The thread's blocked read returns at once; it then sees `evicted` and leaves.
        let _ = self.stream.shutdown(Shutdown::Both);
        true
    }
}

/// Work for the refusal thread.
enum Refusal {
    /// Send this status on the stream, then linger until the client closes.
    Reply(Arc<TcpStream>, ErrorCode),
    /// No more refusals will come: finish the lingering ones and end.
    Finish,
}

/// Failed appends of one kind of journal error, for rate-limited logging.
struct FailureLog {
    kind: Discriminant<JournalError>,
    last_logged: Instant,
    unlogged: u64,
}

/// Repeated failures of one kind are logged at most this often (a full disk would otherwise
/// log one line per frame for as long as clients retry).
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

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

    /// Hands a refusal to the refusal thread; never blocks. With its queue full the stream
    /// is just closed: a flood of refused clients must not stall the caller.
    fn refuse(&self, stream: Arc<TcpStream>, code: ErrorCode) {
        let _ = self.refusals.try_send(Refusal::Reply(stream, code));
    }

    /// Whether a new connection may be admitted, evicting the most stalled one if needed.
    fn make_room(&self) -> bool {
        let conns = lock(&self.conns);
        let max = self.options.max_connections;
        // Evicted connections still leaving count towards a hard cap, so that a connect flood
        // cannot outrun their threads.
        if conns.len() >= max.saturating_mul(2) {
            return false;
        }
        let evicted = conns.iter().filter(|conn| conn.is_evicted()).count();
        if conns.len() - evicted < max {
            return true;
        }
        let now = Instant::now();
        let victim = conns
            .iter()
            .filter_map(|conn| conn.stalled_for(now).map(|stalled| (stalled, conn)))
            .max_by_key(|(stalled, _)| *stalled);
        match victim {
            Some((stalled, conn)) if stalled >= self.options.evict_after => conn.evict(),
            _ => false,
        }
    }

    fn forget(&self, id: u64) {
        lock(&self.conns).retain(|conn| conn.id != id);
    }

    /// Logs a failed append: the first of each kind at once, repeats at most once per
    /// FAILURE_LOG_INTERVAL with a count.
    fn log_failed_append(&self, err: &JournalError, code: ErrorCode) {
        let kind = std::mem::discriminant(err);
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        let earlier = match failures.iter_mut().find(|log| log.kind == kind) {
            Some(log) if now.duration_since(log.last_logged) < FAILURE_LOG_INTERVAL => {
                log.unlogged += 1;
                return;
            }
            Some(log) => {
                log.last_logged = now;
                std::mem::take(&mut log.unlogged)
            }
            None => {
                failures.push(FailureLog {
                    kind,
                    last_logged: now,
                    unlogged: 0,
                });
                0
            }
        };
        drop(failures);
        let status = code as u8;
        if earlier == 0 {
            eprintln!(
                "ingest server: append failed, answered status {status}: {err} (repeats are \
                 counted and logged at most once a minute)"
            );
        } else {
            eprintln!(
                "ingest server: append failed, answered status {status}: {err} ({earlier} \
                 more such failures since the last message)"
            );
        }
    }

    /// Reports failures counted but not logged yet.
    fn log_unlogged_failures(&self) {
        let unlogged: u64 = lock(&self.failures).iter().map(|log| log.unlogged).sum();
        if unlogged > 0 {
            eprintln!("ingest server: {unlogged} more failed appends since the last message");
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<SharedDebug>,
    accept_thread: Option<JoinHandle<()>>,
    refusal_thread: Option<JoinHandle<()>>,
    /// What opening the journal found.
    pub open_report: OpenReport,
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

/// Refused connections lingering at once; beyond it the oldest is closed. Each holds a file
/// descriptor for at most REFUSAL_LINGER.
const MAX_LINGERING: usize = 256;
/// How long a refused client has to take its reply before the socket is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// How often the refusal thread retries lingering sockets.
const REFUSAL_POLL_INTERVAL: Duration = Duration::from_millis(5);

fn check_options(options: &ServeOptions) -> Result<(), ServerError> {
    if options.max_connections == 0 || options.max_frame_bytes == 0 {
        return Err(ServerError::InvalidOptions(
            "max_connections and max_frame_bytes must be positive".into(),
        ));
    }
    if options.idle_timeout.is_zero() || options.frame_timeout.is_zero() {
        return Err(ServerError::InvalidOptions(
            "idle_timeout and frame_timeout must be positive".into(),
        ));
    }
    Ok(())
}

/// Binds the listening socket; returns it with the address it got.
fn bind(listen: &str) -> Result<(TcpListener, SocketAddr), ServerError> {
    let listener = TcpListener::bind(listen).map_err(|source| ServerError::Net {
        op: "bind",
        addr: listen.to_string(),
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Net {
        op: "local address",
        addr: listen.to_string(),
        source,
    })?;
    Ok((listener, addr))
}

impl ServerHandle {
    /// Opens the journal in `dir`, binds, and serves in background threads.
    pub fn start(
        dir: &Path,
        journal_options: JournalOptions,
        options: ServeOptions,
    ) -> Result<ServerHandle, ServerError> {
        check_options(&options)?;
        let (journal, open_report) = Journal::open(dir, journal_options)?;
        if options.max_frame_bytes > journal.max_payload_bytes() {
            return Err(ServerError::InvalidOptions(format!(
                "max_frame_bytes {} exceeds the journal's record limit {}",
                options.max_frame_bytes,
                journal.max_payload_bytes()
            )));
        }
        let (listener, addr) = bind(&options.listen)?;
        let (refusals, refusal_queue) = std::sync::mpsc::sync_channel(MAX_LINGERING);
        let refusal_thread = std::thread::Builder::new()
            .name("ingest-refuse".into())
            .spawn(move || refusal_loop(refusal_queue))
            .map_err(|source| ServerError::Net {
                op: "spawn refusal thread for",
                addr: addr.to_string(),
                source,
            })?;
        let shared = Arc::new(SharedDebug(Shared {
            journal: Arc::new(journal),
            options,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            refusals,
            failures: Mutex::new(Vec::new()),
        }));
        let accept_shared = Arc::clone(&shared);
        let accept_thread = std::thread::Builder::new()
            .name("ingest-accept".into())
            .spawn(move || accept_loop(listener, accept_shared));
        let mut handle = ServerHandle {
            addr,
            shared,
            accept_thread: None,
            refusal_thread: Some(refusal_thread),
            open_report,
        };
        match accept_thread {
            Ok(thread) => handle.accept_thread = Some(thread),
            Err(source) => {
                handle.stop();
                return Err(ServerError::Net {
                    op: "spawn accept thread for",
                    addr: addr.to_string(),
                    source,
                });
            }
        }
        Ok(handle)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Open connections now (including evicted ones not yet closed).
    pub fn connections(&self) -> usize {
        lock(&self.shared.0.conns).len()
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

    /// Stops accepting, lets appends in progress finish, answers everything else with
    /// status 6 and waits for the connection threads to end. The journal stays open while
    /// clones of [`ServerHandle::journal`] live.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// [`ServerHandle::shutdown`], then closes the journal. If a clone of
    /// [`ServerHandle::journal`] is still alive the journal cannot be closed here; it is
    /// committed instead.
    pub fn close(mut self) -> Result<(), ServerError> {
        self.stop();
        let shared = Arc::clone(&self.shared);
        drop(self);
        let journal = match Arc::try_unwrap(shared) {
            Ok(shared) => shared.0.journal,
            Err(shared) => Arc::clone(&shared.0.journal),
        };
        match Arc::try_unwrap(journal) {
            Ok(journal) => journal.close().map_err(ServerError::Close),
            Err(journal) => journal.commit().map(|_| ()).map_err(ServerError::Close),
        }
    }

    fn stop(&mut self) {
        let shared = &self.shared.0;
        shared.stopping.store(true, Ordering::SeqCst);
        if let Some(thread) = self.accept_thread.take() {
            // Wake the blocking accept.
            let _ = TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1));
            // The accept loop joins the connection threads before it ends.
            let _ = thread.join();
        }
        if let Some(thread) = self.refusal_thread.take() {
            // A blocking send: the refusal thread takes work at least every poll interval.
            let _ = shared.refusals.send(Refusal::Finish);
            let _ = thread.join();
        }
        shared.log_unlogged_failures();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.accept_thread.is_some() || self.refusal_thread.is_some() {
            self.stop();
        }
    }
}

/// An address that reaches a listener bound to `addr` (a wildcard address is not one).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Runs the server in the foreground until SIGTERM or SIGINT, then stops it (see
/// [`ServerHandle::close`]) and closes the journal.
///
/// Call it before the process starts any other thread: it blocks the two signals in the
/// calling thread so that every thread started afterwards inherits the mask and the signals
/// wait for this function instead of killing the process.
pub fn serve(
    dir: &Path,
    journal_options: JournalOptions,
    options: ServeOptions,
) -> Result<(), ServerError> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .map_err(|source| ServerError::Signal {
            op: "block SIGTERM and SIGINT",
            source: source.into(),
        })?;
    let handle = ServerHandle::start(dir, journal_options, options)?;
    eprintln!("{}", handle.open_report);
    eprintln!("listening on {}", handle.local_addr());
    let waited = signals.wait();
    match waited {
        Ok(signal) => eprintln!("{signal}: stopping; new frames are answered status 6"),
        Err(err) => eprintln!("waiting for SIGTERM or SIGINT failed ({err}); stopping"),
    }
    handle.close()?;
    eprintln!("journal closed");
    waited.map(|_| ()).map_err(|source| ServerError::Signal {
        op: "wait for SIGTERM or SIGINT",
        source: source.into(),
    })
}

fn accept_loop(listener: TcpListener, shared: Arc<SharedDebug>) {
    let shared_ref = &shared.0;
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id: u64 = 0;
    for stream in listener.incoming() {
        if shared_ref.stopping() {
            if let Ok(stream) = stream {
                shared_ref.refuse(Arc::new(stream), ErrorCode::ShuttingDown);
            }
            break;
        }
        // Dropping the handle of a finished thread releases it.
        threads.retain(|thread| !thread.is_finished());
        let Ok(stream) = stream else {
            // Out of file descriptors and similar: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let stream = Arc::new(stream);
        if !shared_ref.make_room() {
            shared_ref.refuse(stream, ErrorCode::Busy);
            continue;
        }
        next_id += 1;
        let id = next_id;
        let conn = Arc::new(Conn {
            id,
            stream,
            state: Mutex::new(ConnState {
                phase: Phase::Idle,
                since: Instant::now(),
                evicted: false,
            }),
        });
        lock(&shared_ref.conns).push(Arc::clone(&conn));
        let conn_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("ingest-conn".into())
            .spawn(move || {
                let shared = &conn_shared.0;
                serve_connection(&conn, shared);
                shared.forget(conn.id);
            });
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(_) => shared_ref.forget(id),
        }
    }
    // Clients already queued in the backlog get status 6 rather than a reset.
    if listener.set_nonblocking(true).is_ok() {
        while let Ok((stream, _)) = listener.accept() {
            shared_ref.refuse(Arc::new(stream), ErrorCode::ShuttingDown);
        }
    }
    drop(listener);
    for thread in threads {
        let _ = thread.join();
    }
}

/// A refused connection: its reply goes out, then its input is read and dropped until the
/// client closes, so that closing with unread input does not reset the connection before the
/// client has read the reply.
struct Lingering {
    stream: Arc<TcpStream>,
    reply: [u8; REPLY_BYTES],
    written_bytes: usize,
    drained_bytes: usize,
    deadline: Instant,
}

/// Input read and dropped from one refused connection at most.
const DRAIN_LIMIT_BYTES: usize = 1 << 20;

impl Lingering {
    /// Writes and drains what the socket allows without blocking; false when done with it.
    fn progress(&mut self, now: Instant) -> bool {
        if now >= self.deadline {
            return false;
        }
        let stream = &*self.stream;
        while self.written_bytes < REPLY_BYTES {
            match (&*stream).write(&self.reply[self.written_bytes..]) {
                Ok(0) => return false,
                Ok(n) => {
                    self.written_bytes += n;
                    if self.written_bytes == REPLY_BYTES {
                        let _ = stream.shutdown(Shutdown::Write);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        let mut sink = [0u8; 4096];
        loop {
            match (&*stream).read(&mut sink) {
                Ok(0) => return false,
                Ok(n) => {
                    self.drained_bytes += n;
                    if self.drained_bytes >= DRAIN_LIMIT_BYTES {
                        return false;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    }
}

fn refusal_loop(queue: Receiver<Refusal>) {
    let mut lingering: VecDeque<Lingering> = VecDeque::new();
    let mut finishing = false;
    loop {
        loop {
            // Block only when there is nothing else to do.
            let next = if lingering.is_empty() && !finishing {
                queue.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                queue.try_recv()
            };
            match next {
                Ok(Refusal::Reply(stream, code)) => {
                    if lingering.len() >= MAX_LINGERING {
                        lingering.pop_front();
                    }
                    if stream.set_nonblocking(true).is_ok() {
                        lingering.push_back(Lingering {
                            stream,
                            reply: encode_reply(Err(code)),
                            written_bytes: 0,
                            drained_bytes: 0,
                            deadline: Instant::now() + REFUSAL_LINGER,
                        });
                    }
                }
                Ok(Refusal::Finish) => finishing = true,
                Err(TryRecvError::Disconnected) => {
                    finishing = true;
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if finishing && lingering.is_empty() {
            return;
        }
        let now = Instant::now();
        lingering.retain_mut(|refused| refused.progress(now));
        if !lingering.is_empty() {
            std::thread::sleep(REFUSAL_POLL_INTERVAL);
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

/// How often a blocked read wakes up to check for shutdown and eviction.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The payload buffer grows by at most this much per read, so that a claimed length costs
/// memory only as its bytes actually arrive.
const PAYLOAD_GROWTH_BYTES: usize = 64 * 1024;

/// How reading part of a frame ended.
enum ReadEnd {
    /// The buffer is full.
    Done,
    /// Closed, broken, evicted or past a deadline: close without a reply.
    Gone,
    /// The server is stopping: answer status 6.
    Stopping,
}

/// Deadlines of the frame being read.
struct Deadlines {
    /// Until the first byte of the frame (None: too far away to represent).
    idle: Option<Instant>,
    /// Until its last byte, set at its first byte.
    frame: Option<Option<Instant>>,
}

/// Fills `buf` from the connection before the frame's deadline (the idle one until the
/// frame's first byte arrives).
fn read_within(conn: &Conn, shared: &Shared, buf: &mut [u8], deadlines: &mut Deadlines) -> ReadEnd {
    let mut done = 0;
    while done < buf.len() {
        if conn.is_evicted() {
            return ReadEnd::Gone;
        }
        if shared.stopping() {
            return ReadEnd::Stopping;
        }
        let deadline = deadlines.frame.unwrap_or(deadlines.idle);
        let wait = match deadline {
            None => POLL_INTERVAL,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(POLL_INTERVAL),
                _ => return ReadEnd::Gone,
            },
        };
        if conn.stream.set_read_timeout(Some(wait)).is_err() {
            return ReadEnd::Gone;
        }
        match (&*conn.stream).read(&mut buf[done..]) {
            Ok(0) => return ReadEnd::Gone,
            Ok(n) => {
                if deadlines.frame.is_none() {
                    if !conn.enter(Phase::Reading) {
                        return ReadEnd::Gone;
                    }
                    deadlines.frame =
                        Some(Instant::now().checked_add(shared.options.frame_timeout));
                }
                done += n;
            }
            Err(err)
                if err.kind() == io::ErrorKind::WouldBlock
                    || err.kind() == io::ErrorKind::TimedOut
                    || err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return ReadEnd::Gone,
        }
    }
    ReadEnd::Done
}

/// Serves one connection until it closes, breaks, stalls, is evicted or is refused.
fn serve_connection(conn: &Conn, shared: &Shared) {
    let stream = &conn.stream;
    if stream.set_nodelay(true).is_err()
        || stream
            .set_write_timeout(Some(shared.options.frame_timeout))
            .is_err()
    {
        return;
    }
    let refuse = |code| shared.refuse(Arc::clone(stream), code);
    let mut payload: Vec<u8> = Vec::new();
    loop {
        let mut deadlines = Deadlines {
            idle: Instant::now().checked_add(shared.options.idle_timeout),
            frame: None,
        };
        let mut header = [0u8; FRAME_HEADER_BYTES];
        match read_within(conn, shared, &mut header, &mut deadlines) {
            ReadEnd::Done => {}
            ReadEnd::Gone => return,
            ReadEnd::Stopping => return refuse(ErrorCode::ShuttingDown),
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > shared.options.max_frame_bytes {
            return refuse(ErrorCode::FrameTooLarge);
        }
        // Bounded by max_frame_bytes, checked above; the buffer is reused across frames.
        payload.clear();
        while payload.len() < len {
            let from = payload.len();
            let to = len.min(from + PAYLOAD_GROWTH_BYTES);
            // Exact, so that the buffer never exceeds max_frame_bytes.
            payload.reserve_exact(to - from);
            payload.resize(to, 0);
            match read_within(conn, shared, &mut payload[from..to], &mut deadlines) {
                ReadEnd::Done => {}
                ReadEnd::Gone => return,
                ReadEnd::Stopping => return refuse(ErrorCode::ShuttingDown),
            }
        }
        if crc32c::crc32c(&payload) != crc {
            return refuse(ErrorCode::Malformed);
        }
        // A frame completed after the stop is not appended.
        if shared.stopping() {
            return refuse(ErrorCode::ShuttingDown);
        }
        if !conn.enter(Phase::Appending) {
            return;
        }
        let lsn = match shared.journal.append_durable(&payload) {
            Ok(lsn) => lsn,
            Err(err) => {
                let code = match err {
                    JournalError::Poisoned => ErrorCode::Poisoned,
                    _ => ErrorCode::Io,
                };
                shared.log_failed_append(&err, code);
                return refuse(code);
            }
        };
        if (&**stream).write_all(&encode_reply(Ok(lsn))).is_err() {
            return;
        }
        // Idle from here: never evicted while appending, so this cannot fail.
        conn.enter(Phase::Idle);
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
