//! The ingest server: concurrent clients, malformed and oversized frames, abrupt disconnects,
//! stalled clients, the connection limit.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use powercut_writer::recover;
use powercut_writer::server::{Client, ClientError, ErrorCode, ServeOptions, ServerHandle};

fn start(dir: &std::path::Path, max_connections: usize) -> ServerHandle {
    ServerHandle::start(
        dir,
        small_options(),
        ServeOptions {
            listen: "127.0.0.1:0".into(),
            max_frame_bytes: 16 * 1024,
            max_connections,
            idle_timeout: Duration::from_secs(2),
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
    let mut acked: Vec<(u64, Vec<u8>)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    acked.sort();
    server.shutdown();
    let recovery = recover(dir.path()).unwrap();
    assert_eq!(recovery.records.len(), 640);
    for (record, (lsn, data)) in recovery.records.iter().zip(&acked) {
        assert_eq!(record.lsn, *lsn);
        assert_eq!(&record.payload, data);
    }
}

fn raw_reply(stream: &mut TcpStream) -> Option<[u8; 9]> {
    let mut reply = [0u8; 9];
    stream.read_exact(&mut reply).ok().map(|()| reply)
}

fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
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
