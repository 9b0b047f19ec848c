//! The ingest server: concurrent clients, malformed and oversized frames, abrupt disconnects,
//! stalled clients, the connection limit.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use powercut_writer::server::{Client, ClientError, ErrorCode, ServeOptions, ServerHandle};
use powercut_writer::{recover, JournalOptions};

fn start(dir: &std::path::Path, max_connections: usize) -> ServerHandle {
    ServerHandle::start(
        dir,
        // Room for 16 KiB frames: staging buffers of 48 KiB.
        JournalOptions {
            max_staging_bytes: 256 * 1024,
            ..small_options()
        },
        ServeOptions {
            listen: "127.0.0.1:0".into(),
            max_frame_bytes: 16 * 1024,
            max_connections,
            idle_timeout: Duration::from_secs(2),
            frame_timeout: Duration::from_secs(2),
            // Only the eviction tests evict.
            evict_after: Duration::MAX,
        },
    )
    .unwrap()
}

#[test]
fn many_concurrent_clients_get_durable_lsns() {
    let dir = scratch();
    let server = start(dir.path(), 64);
    let addr = server.local_addr();
    let threads: Vec<_> = (0..16u64)
        .map(|client| {
            std::thread::spawn(move || {
                let mut connection = Client::connect(addr).unwrap();
                (0..40u64)
                    .map(|i| {
                        let data = payload(client * 100 + i, (i as usize * 97) % 5000);
                        (connection.append(&data).unwrap(), data)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acked = join_acked(threads);
    server.shutdown();
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(recovery.records.len(), 640);
    for (record, (lsn, data)) in recovery.records.iter().zip(&acked) {
        assert_eq!(record.lsn, *lsn);
        assert_eq!(&record.payload, data);
    }
}

fn closed(stream: &mut TcpStream) -> bool {
    closed_within(stream, Duration::from_secs(30))
}

#[test]
fn malformed_and_oversized_frames_get_an_error_and_a_close() {
    let dir = scratch();
    let server = start(dir.path(), 64);
    let addr = server.local_addr();

    // Bad checksum.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(&5u32.to_le_bytes()).unwrap();
    stream.write_all(&0xdeadbeefu32.to_le_bytes()).unwrap();
    stream.write_all(b"hello").unwrap();
    let reply = raw_reply(&mut stream).unwrap();
    assert_eq!(reply[0], ErrorCode::Malformed as u8);
    assert!(closed(&mut stream));

    // Oversized frame: refused before any payload is read.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(&u32::MAX.to_le_bytes()).unwrap();
    stream.write_all(&0u32.to_le_bytes()).unwrap();
    let reply = raw_reply(&mut stream).unwrap();
    assert_eq!(reply[0], ErrorCode::FrameTooLarge as u8);
    assert!(closed(&mut stream));

    let mut client = Client::connect(addr).unwrap();
    match client.append(&vec![1u8; 16 * 1024 + 1]) {
        Err(ClientError::Refused(ErrorCode::FrameTooLarge)) => {}
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }

    // The server still works, and nothing of the refused frames reached the journal.
    let mut client = Client::connect(addr).unwrap();
    assert_eq!(client.append(b"fine").unwrap(), 1);
    server.shutdown();
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(recovery.records.len(), 1);
}

#[test]
fn abrupt_disconnects_and_stalled_clients_do_not_stall_others() {
    let dir = scratch();
    let server = start(dir.path(), 64);
    let addr = server.local_addr();
    // A client that sends half a frame and stalls; another that disconnects mid-frame.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(&1000u32.to_le_bytes()).unwrap();
    stalled.write_all(&0u32.to_le_bytes()).unwrap();
    stalled.write_all(&[1u8; 10]).unwrap();
    {
        let mut gone = TcpStream::connect(addr).unwrap();
        gone.write_all(&1000u32.to_le_bytes()).unwrap();
        gone.write_all(&[0u8; 20]).unwrap();
    }
    // A client that pipelines requests and never reads replies, then vanishes.
    {
        let mut rude = Client::connect(addr).unwrap();
        for _ in 0..5 {
            rude.send(b"pipelined").unwrap();
        }
    }
    let start = Instant::now();
    let mut client = Client::connect(addr).unwrap();
    for i in 0..50u64 {
        client.append(&payload(i, 100)).unwrap();
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "others were stalled"
    );
    // The stalled client is closed after the idle timeout, without a record.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(closed(&mut stalled));
    server.shutdown();
    let recovery = recover(dir.path()).unwrap();
    // 50 records plus the pipelined ones the server received before the disconnect.
    assert!(
        recovery.records.len() >= 50 && recovery.records.len() <= 55,
        "{recovery}"
    );
    assert!(recovery
        .records
        .iter()
        .all(|r| r.payload.len() == 100 || r.payload == b"pipelined"));
}

#[test]
fn connection_limit_answers_busy() {
    let dir = scratch();
    let server = start(dir.path(), 2);
    let addr = server.local_addr();
    let mut first = Client::connect(addr).unwrap();
    let mut second = Client::connect(addr).unwrap();
    first.append(b"1").unwrap();
    second.append(b"2").unwrap();
    let mut third = Client::connect(addr).unwrap();
    match third.append(b"3") {
        Err(ClientError::Refused(ErrorCode::Busy)) | Err(ClientError::Io { .. }) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
    drop(first);
    // The slot frees up once the server notices the close.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut fourth = Client::connect(addr).unwrap();
        match fourth.append(b"4") {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(err) => panic!("slot never freed: {err}"),
        }
    }
    server.shutdown();
}

fn start_with(dir: &std::path::Path, options: ServeOptions) -> ServerHandle {
    ServerHandle::start(
        dir,
        // Room for 16 KiB frames: staging buffers of 48 KiB.
        JournalOptions {
            max_staging_bytes: 256 * 1024,
            ..small_options()
        },
        ServeOptions {
            listen: "127.0.0.1:0".into(),
            max_frame_bytes: 16 * 1024,
            ..options
        },
    )
    .unwrap()
}

/// Whether the server has closed `stream`, waiting up to `wait` for it.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut byte = [0u8; 1];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => panic!("unexpected reply byte"),
            Err(err) => match err.kind() {
                std::io::ErrorKind::Interrupted => {}
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => return false,
                _ => return true,
            },
        }
    }
}

#[test]
fn slowloris_trickled_bytes_do_not_extend_the_frame_deadline() {
    let dir = scratch();
    let server = start_with(
        dir.path(),
        ServeOptions {
            max_connections: 4,
            // Far away: only the frame deadline can close the connection in time.
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(1),
            evict_after: Duration::MAX,
            ..ServeOptions::default()
        },
    );
    let mut trickler = TcpStream::connect(server.local_addr()).unwrap();
    // A frame claiming 1000 bytes, fed one byte every 100 ms: it would take 100 s.
    let mut frame = 1000u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&[0u8; 1004]);
    let started = Instant::now();
    let mut was_closed = false;
    for byte in &frame {
        if trickler.write_all(std::slice::from_ref(byte)).is_err()
            || closed_within(&mut trickler, Duration::from_millis(100))
        {
            was_closed = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(was_closed, "still open after {elapsed:?} of trickling");
    // Closed by the 1 s frame deadline from the first byte, not earlier.
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}"
    );
    // A well-behaved client on the same server is unaffected.
    let mut client = Client::connect(server.local_addr()).unwrap();
    assert_eq!(client.append(b"after").unwrap(), 1);
    server.shutdown();
    assert_eq!(recover(dir.path()).unwrap().records.len(), 1);
}

#[test]
fn slowloris_connection_that_never_starts_a_frame_is_closed_after_the_idle_timeout() {
    let dir = scratch();
    let server = start_with(
        dir.path(),
        ServeOptions {
            max_connections: 4,
            idle_timeout: Duration::from_secs(1),
            frame_timeout: Duration::from_secs(600),
            evict_after: Duration::MAX,
            ..ServeOptions::default()
        },
    );
    let started = Instant::now();
    let mut holder = TcpStream::connect(server.local_addr()).unwrap();
    assert!(closed_within(&mut holder, Duration::from_secs(30)));
    assert!(started.elapsed() >= Duration::from_millis(900));
    // After a reply the idle timeout starts again.
    let mut client = Client::connect(server.local_addr()).unwrap();
    client.append(b"one").unwrap();
    let replied = Instant::now();
    assert!(closed_within(client.stream_mut(), Duration::from_secs(30)));
    assert!(replied.elapsed() >= Duration::from_millis(900));
    server.shutdown();
}

#[test]
fn slowloris_busy_refusals_do_not_block_the_accept_loop() {
    let dir = scratch();
    let server = start_with(
        dir.path(),
        ServeOptions {
            max_connections: 1,
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(600),
            evict_after: Duration::MAX,
            ..ServeOptions::default()
        },
    );
    let addr = server.local_addr();
    let mut holder = Client::connect(addr).unwrap();
    holder.append(b"held").unwrap();
    // Refused clients that keep their end open: a refusal that waits for them to close (or
    // for a read timeout) in the accept loop costs at least 200 ms each, 12 s for all.
    let started = Instant::now();
    let mut refused = Vec::new();
    for _ in 0..60 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let reply = raw_reply(&mut stream).expect("no Busy reply");
        assert_eq!(reply[0], ErrorCode::Busy as u8);
        refused.push(stream);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(6),
        "60 refusals took {elapsed:?}"
    );
    // The refused connections are closed by the server after the reply.
    for stream in &mut refused {
        assert!(closed_within(stream, Duration::from_secs(30)));
    }
    assert_eq!(holder.append(b"still served").unwrap(), 2);
    server.shutdown();
}

#[test]
fn slowloris_full_server_evicts_the_most_stalled_connection() {
    let dir = scratch();
    let server = start_with(
        dir.path(),
        ServeOptions {
            max_connections: 2,
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(600),
            evict_after: Duration::from_millis(200),
            ..ServeOptions::default()
        },
    );
    let addr = server.local_addr();
    // Connect-and-hold, then half a frame a little later: the holder has stalled longer.
    let mut holder = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(&1000u32.to_le_bytes()).unwrap();
    half.write_all(&0u32.to_le_bytes()).unwrap();
    half.write_all(&[1u8; 10]).unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let mut first = Client::connect(addr).unwrap();
    assert_eq!(first.append(b"first").unwrap(), 1);
    assert!(closed_within(&mut holder, Duration::from_secs(30)));
    assert!(!closed_within(&mut half, Duration::from_millis(100)));

    // Full again (half, first): the half frame started before `first` went idle.
    let mut second = Client::connect(addr).unwrap();
    assert_eq!(second.append(b"second").unwrap(), 2);
    assert!(closed_within(&mut half, Duration::from_secs(30)));
    // Nothing of the evicted half frame reached the journal; `first` was not evicted.
    assert_eq!(first.append(b"third").unwrap(), 3);
    drop((first, second));
    server.shutdown();
    let recovery = recover(dir.path()).unwrap();
    let payloads: Vec<&[u8]> = recovery
        .records
        .iter()
        .map(|r| r.payload.as_slice())
        .collect();
    assert_eq!(payloads, [&b"first"[..], b"second", b"third"]);
}

#[test]
fn shutdown_answers_idle_connections_and_late_frames_with_status_6() {
    let dir = scratch();
    let server = start(dir.path(), 8);
    let addr = server.local_addr();
    let mut idle = Client::connect(addr).unwrap();
    assert_eq!(idle.append(b"before").unwrap(), 1);
    // A pipelining client that keeps sending until the server closes the connection.
    let mut sender = Client::connect(addr).unwrap();
    let receiver = sender.stream_mut().try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let mut sent = 0u64;
        while sender.send(&payload(1000 + sent, 50)).is_ok() && sent < 100_000 {
            sent += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let receiving = read_replies(receiver);
    std::thread::sleep(Duration::from_millis(300));
    server.shutdown();
    match idle.receive() {
        Err(ClientError::Refused(ErrorCode::ShuttingDown)) => {}
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
    sending.join().unwrap();
    let replies = receiving.join().unwrap();
    let (last, acked) = replies.split_last().expect("no replies");
    assert_eq!(last[0], ErrorCode::ShuttingDown as u8, "{replies:?}");
    assert!(acked.iter().all(|reply| reply[0] == 0));
    // Every acknowledged record, and nothing after the stop, is in the journal.
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(recovery.records.len(), 1 + acked.len());
    for (record, reply) in recovery.records[1..].iter().zip(acked) {
        assert_eq!(record.lsn.to_le_bytes(), reply[1..]);
    }
}
