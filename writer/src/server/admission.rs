//! Refusals and eviction: which connection is admitted, which stalled one makes room, and the
//! thread that sends refusals and lingers until the refused client closes.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::protocol::{encode_reply, ErrorCode, REPLY_BYTES};
use super::{lock, Shared};

/// Work for the refusal thread.
pub(super) enum Refusal {
    /// Send this status on the stream, then linger until the client closes.
    Reply(Arc<TcpStream>, ErrorCode),
    /// No more refusals will come: finish the lingering ones and end.
    Finish,
}

/// Refused connections lingering at once; beyond it the oldest is closed. Each holds a file
/// descriptor for at most REFUSAL_LINGER.
pub(super) const MAX_LINGERING: usize = 256;
/// How long a refused client has to take its reply before the socket is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// How often the refusal thread retries lingering sockets.
const REFUSAL_POLL_INTERVAL: Duration = Duration::from_millis(5);

impl Shared {
    /// Hands a refusal to the refusal thread; never blocks. With its queue full the stream
    /// is just closed: a flood of refused clients must not stall the caller.
    pub(super) fn refuse(&self, stream: Arc<TcpStream>, code: ErrorCode) {
        let _ = self.refusals.try_send(Refusal::Reply(stream, code));
    }

    /// Whether a new connection may be admitted, evicting the most stalled one if needed.
    pub(super) fn make_room(&self) -> bool {
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

/// The refusal thread: sends each refusal's reply and lingers on its socket until the client
/// closes, the linger time runs out or the queue says to finish.
pub(super) fn refusal_loop(queue: Receiver<Refusal>) {
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
