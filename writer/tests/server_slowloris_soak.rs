//! Slowloris soak: abusive clients (trickling bytes, half frames, connect-and-hold, garbage
//! lengths, bad checksums) keep a small server full while well-behaved clients append. The
//! well-behaved clients must keep making progress, and every record acknowledged to them must
//! be recovered with its exact payload.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use powercut_writer::server::{Client, ServeOptions, ServerHandle};

const MAX_CONNECTIONS: usize = 8;
const SOAK: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, Copy)]
enum Abuse {
    /// One byte of a frame every 50 ms.
    Trickle,
    /// A header and part of the payload, then nothing.
    HalfFrame,
    /// Connect and send nothing.
    Hold,
    /// A length far above the limit.
    GarbageLength,
    /// A complete frame with a wrong checksum.
    BadChecksum,
}

/// Waits up to `wait` for input or a close; true when the connection is closed or broken.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut sink = [0u8; 64];
    if stream.set_read_timeout(Some(wait)).is_err() {
        return true;
    }
    match stream.read(&mut sink) {
        Ok(0) => true,
        // A refusal's reply; the close follows.
        Ok(_) => false,
        Err(err) => !matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::Interrupted
        ),
    }
}

/// One abusive client: reconnects whenever the server closes it, until `stop`.
/// Counts the connections it held open for at least 150 ms.
fn abuse(addr: SocketAddr, kind: Abuse, stop: &AtomicBool, held: &AtomicUsize) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut stream) = TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let connected = Instant::now();
        let mut counted = false;
        let opening: Vec<u8> = match kind {
            Abuse::Trickle | Abuse::Hold => Vec::new(),
            Abuse::HalfFrame => {
                let mut bytes = 3000u32.to_le_bytes().to_vec();
                bytes.extend_from_slice(&[0u8; 4 + 100]);
                bytes
            }
            Abuse::GarbageLength => {
                let mut bytes = 0xfff0_0000u32.to_le_bytes().to_vec();
                bytes.extend_from_slice(&[0xab; 4 + 64]);
                bytes
            }
            Abuse::BadChecksum => {
                let mut bytes = 16u32.to_le_bytes().to_vec();
                bytes.extend_from_slice(&0x1234_5678u32.to_le_bytes());
                bytes.extend_from_slice(&[0x5a; 16]);
                bytes
            }
        };
        if stream.write_all(&opening).is_err() {
            continue;
        }
        while !stop.load(Ordering::SeqCst) {
            if matches!(kind, Abuse::Trickle) && stream.write_all(&[0x01]).is_err() {
                break;
            }
            if closed_within(&mut stream, Duration::from_millis(50)) {
                break;
            }
            if !counted && connected.elapsed() >= Duration::from_millis(150) {
                counted = true;
                held.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// A well-behaved client: appends distinct records, reconnecting after refusals and closes.
/// Returns what was acknowledged and the most records acknowledged while abusers held on.
fn behave(addr: SocketAddr, client: u64, stop: &AtomicBool) -> Vec<(u64, Vec<u8>)> {
    let mut acked = Vec::new();
    let mut attempt = 0u64;
    let mut connection: Option<Client> = None;
    while !stop.load(Ordering::SeqCst) {
        let mut current = match connection.take() {
            Some(current) => current,
            None => match Client::connect(addr) {
                Ok(current) => current,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        attempt += 1;
        let mut data = format!("good {client} {attempt} ").into_bytes();
        data.extend(payload(
            client * 1_000_000 + attempt,
            (attempt as usize * 37) % 700,
        ));
        match current.append(&data) {
            Ok(lsn) => {
                acked.push((lsn, data));
                connection = Some(current);
            }
            // Busy, or closed: try again on a new connection.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    acked
}

#[test]
fn slowloris_soak_well_behaved_clients_progress_and_acked_records_survive() {
    let dir = scratch();
    let server = ServerHandle::start(
        dir.path(),
        small_options(),
        ServeOptions {
            listen: "127.0.0.1:0".into(),
            max_frame_bytes: 4096,
            max_connections: MAX_CONNECTIONS,
            idle_timeout: Duration::from_secs(2),
            frame_timeout: Duration::from_secs(1),
            evict_after: Duration::from_millis(200),
        },
    )
    .unwrap();
    let addr = server.local_addr();
    let stop_abuse = Arc::new(AtomicBool::new(false));
    let stop_good = Arc::new(AtomicBool::new(false));
    let held = Arc::new(AtomicUsize::new(0));

    let kinds = [
        (Abuse::Trickle, 6),
        (Abuse::HalfFrame, 6),
        (Abuse::Hold, 6),
        (Abuse::GarbageLength, 2),
        (Abuse::BadChecksum, 2),
    ];
    let abusers: Vec<_> = kinds
        .iter()
        .flat_map(|&(kind, count)| std::iter::repeat_n(kind, count))
        .map(|kind| {
            let stop = Arc::clone(&stop_abuse);
            let held = Arc::clone(&held);
            std::thread::spawn(move || abuse(addr, kind, &stop, &held))
        })
        .collect();
    // Let the abusers fill the server before the well-behaved clients arrive.
    let filled = Instant::now();
    while server.connections() < MAX_CONNECTIONS && filled.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        server.connections() >= MAX_CONNECTIONS,
        "abusers never filled the server"
    );

    let good: Vec<_> = (1..=3u64)
        .map(|client| {
            let stop = Arc::clone(&stop_good);
            std::thread::spawn(move || behave(addr, client, &stop))
        })
        .collect();
    // Sample how full the server is while everyone runs.
    let soak_started = Instant::now();
    let mut fullest = 0;
    while soak_started.elapsed() < SOAK {
        fullest = fullest.max(server.connections());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The well-behaved clients stop first, so all their progress was made beside abusers.
    stop_good.store(true, Ordering::SeqCst);
    let per_client: Vec<Vec<(u64, Vec<u8>)>> =
        good.into_iter().map(|t| t.join().unwrap()).collect();
    stop_abuse.store(true, Ordering::SeqCst);
    for abuser in abusers {
        abuser.join().unwrap();
    }
    let held = held.load(Ordering::SeqCst);
    server.shutdown();

    assert!(
        fullest >= MAX_CONNECTIONS,
        "server never full during the soak"
    );
    assert!(held >= 10, "abusers held only {held} connections");
    for (client, acked) in per_client.iter().enumerate() {
        // Hundreds are expected; a server held by abusers gives next to none.
        assert!(
            acked.len() >= 20,
            "well-behaved client {client} got only {} records acknowledged",
            acked.len()
        );
    }
    let mut acked: Vec<(u64, Vec<u8>)> = per_client.into_iter().flatten().collect();
    // Exactly the acknowledged records: nothing of an abuser's frame, nothing refused.
    assert_recovers_exactly(dir.path(), &mut acked);
}
