//! One thread per connection: reads whole frames within their deadlines, appends them and
//! replies; and the rate-limited log of failed appends.

use std::io::{self, Read, Write};
use std::mem::Discriminant;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::protocol::{decode_header, encode_reply, ErrorCode, FRAME_HEADER_BYTES};
use super::{lock, Shared};
use crate::JournalError;

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the first byte of a frame.
    Idle,
    /// Between the first and the last byte of a frame.
    Reading,
    /// The frame is complete and being appended: never evicted.
    Appending,
}

/// A connection's phase, and whether it was evicted.
#[derive(Debug)]
pub(super) struct ConnState {
    pub(super) phase: Phase,
    /// When the phase began (the accept or last reply for Idle, the first byte for Reading).
    pub(super) since: Instant,
    /// Closed to make room; its frame, if any, must not be appended.
    pub(super) evicted: bool,
}

/// A connection as the accept loop sees it, to pick and close one to evict.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) stream: Arc<TcpStream>,
    pub(super) state: Mutex<ConnState>,
}

impl Conn {
    pub(super) fn is_evicted(&self) -> bool {
        lock(&self.state).evicted
    }

    /// Moves to `phase` starting now; false if the connection was evicted.
    pub(super) fn enter(&self, phase: Phase) -> bool {
        let mut state = lock(&self.state);
        if state.evicted {
            return false;
        }
        state.phase = phase;
        state.since = Instant::now();
        true
    }

    /// How long it has been idle or in its current frame; None when not evictable.
    pub(super) fn stalled_for(&self, now: Instant) -> Option<Duration> {
        let state = lock(&self.state);
        (!state.evicted && state.phase != Phase::Appending)
            .then(|| now.saturating_duration_since(state.since))
    }

    /// Marks the connection evicted and wakes its thread; false if it started appending.
    pub(super) fn evict(&self) -> bool {
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

/// How reading a frame ended.
enum Frame {
    /// The payload is complete and matches its checksum.
    Complete,
    /// Close without a reply.
    Gone,
    /// Answer this status, then close.
    Refuse(ErrorCode),
}

/// Reads one frame into `payload` (reused across frames).
fn read_frame(conn: &Conn, shared: &Shared, payload: &mut Vec<u8>) -> Frame {
    let mut deadlines = Deadlines {
        idle: Instant::now().checked_add(shared.options.idle_timeout),
        frame: None,
    };
    let mut header = [0u8; FRAME_HEADER_BYTES];
    match read_within(conn, shared, &mut header, &mut deadlines) {
        ReadEnd::Done => {}
        ReadEnd::Gone => return Frame::Gone,
        ReadEnd::Stopping => return Frame::Refuse(ErrorCode::ShuttingDown),
    }
    let (len, crc) = decode_header(&header);
    if len > shared.options.max_frame_bytes {
        return Frame::Refuse(ErrorCode::FrameTooLarge);
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
            ReadEnd::Gone => return Frame::Gone,
            ReadEnd::Stopping => return Frame::Refuse(ErrorCode::ShuttingDown),
        }
    }
    if crc32c::crc32c(payload) != crc {
        return Frame::Refuse(ErrorCode::Malformed);
    }
    Frame::Complete
}

/// Serves one connection until it closes, breaks, stalls, is evicted or is refused.
pub(super) fn serve_connection(conn: &Conn, shared: &Shared) {
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
        match read_frame(conn, shared, &mut payload) {
            Frame::Complete => {}
            Frame::Gone => return,
            Frame::Refuse(code) => return refuse(code),
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

/// Failed appends of one kind of journal error, for rate-limited logging.
pub(super) struct FailureLog {
    kind: Discriminant<JournalError>,
    last_logged: Instant,
    unlogged: u64,
}

/// Repeated failures of one kind are logged at most this often (a full disk would otherwise
/// log one line per frame for as long as clients retry).
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl Shared {
    /// Logs a failed append: the first of each kind at once, repeats at most once per
    /// FAILURE_LOG_INTERVAL with a count.
    pub(super) fn log_failed_append(&self, err: &JournalError, code: ErrorCode) {
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
    pub(super) fn log_unlogged_failures(&self) {
        let unlogged: u64 = lock(&self.failures).iter().map(|log| log.unlogged).sum();
        if unlogged > 0 {
            eprintln!("ingest server: {unlogged} more failed appends since the last message");
        }
    }
}
