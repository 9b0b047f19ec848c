//! The running server: start, the accept loop, stop; and [`serve`] for the foreground.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use super::admission::{refusal_loop, Refusal, MAX_LINGERING};
use super::connection::{serve_connection, Conn, ConnState, Phase};
use super::protocol::ErrorCode;
use super::{lock, ServeOptions, ServerError, Shared, SharedDebug};
use crate::{Journal, JournalOptions, OpenReport};

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
