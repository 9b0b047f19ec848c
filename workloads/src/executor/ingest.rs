//! Ingest steps: concurrent clients of the engine's ingest server, each record acked on the
//! server's reply; the journal handed to the server and taken back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use powercut_writer::server::{ServeOptions, ServerHandle};
use powercut_writer::Journal;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::error::{ExecError, Phase};
use super::ledger::{RecordIdentity, Shared};
use super::run::{describe_open, draw_size, Run};
use crate::ack::Ack;
use crate::payload;
use crate::spec::IngestStep;

impl Run<'_, '_> {
    /// An `ingest:` step: the journal goes to the engine's ingest server, the clients send
    /// their records concurrently, and the journal comes back when the server stops.
    pub(super) fn ingest(
        &mut self,
        index: usize,
        step: &IngestStep,
        phase: &Phase,
    ) -> Result<(), ExecError> {
        let server = self.start_server(step, phase)?;
        let results = self.run_clients(index, step, phase, server.local_addr());
        // Take the journal back from the server (its connection threads drop their references
        // as they finish).
        let journal = Arc::clone(server.journal());
        server.shutdown();
        let journal = take_back(journal).ok_or_else(|| ExecError::Contract {
            phase: phase.clone(),
            message: "the ingest server kept its journal after shutting down".into(),
        })?;
        self.journal = Some(journal);
        for result in results {
            let (records, bytes) = result?;
            self.summary.records += records;
            self.summary.record_bytes += bytes;
        }
        self.check_ingested(step, phase)
    }

    /// Closes the journal and starts the ingest server on it, checking the server's recovery
    /// as a reopen's.
    fn start_server(
        &mut self,
        step: &IngestStep,
        phase: &Phase,
    ) -> Result<ServerHandle, ExecError> {
        // The server opens the journal itself: hand it the directory.
        let journal = self.journal.take().ok_or_else(|| ExecError::Contract {
            phase: phase.clone(),
            message: "no journal open".into(),
        })?;
        journal.close().map_err(|source| ExecError::Journal {
            phase: phase.clone(),
            op: "close",
            source,
        })?;
        let clients = u32::try_from(step.clients).unwrap_or(u32::MAX);
        let options = ServeOptions {
            listen: "127.0.0.1:0".to_string(),
            max_frame_bytes: usize::try_from(step.size.max_bytes).unwrap_or(usize::MAX),
            max_connections: clients as usize + 1,
            idle_timeout: Duration::from_secs(60),
            ..ServeOptions::default()
        };
        // The journal is closed: read what a reopen recovers, then let the server reopen it.
        let recovery = powercut_writer::recover_with(
            &self.journal_dir,
            self.shared.workload.journal_options().mutant,
        )
        .map_err(|source| ExecError::Journal {
            phase: phase.clone(),
            op: "recover",
            source,
        })?;
        let server = ServerHandle::start(
            &self.journal_dir,
            self.shared.workload.journal_options(),
            options,
        )
        .map_err(|source| ExecError::Server {
            phase: phase.clone(),
            source,
        })?;
        self.summary
            .open_reports
            .push(describe_open(&server.open_report));
        // The server's open ran recovery: it must hold exactly what was acked, as for a reopen.
        if server.open_report.recovery != recovery.summary() {
            return Err(ExecError::Contract {
                phase: phase.clone(),
                message: format!(
                    "the server's open recovered {} but recovery before it {}",
                    server.open_report.recovery,
                    recovery.summary()
                ),
            });
        }
        self.check_recovery(phase, &recovery);
        Ok(server)
    }

    /// Runs the clients of the step against `addr`, one thread each; returns each client's
    /// (records, payload bytes) or error.
    fn run_clients(
        &mut self,
        index: usize,
        step: &IngestStep,
        phase: &Phase,
        addr: SocketAddr,
    ) -> Vec<Result<(u64, u64), ExecError>> {
        let clients = u32::try_from(step.clients).unwrap_or(u32::MAX);
        let seed = self.shared.workload.seed;
        let writers = self.writer_base + 1..=self.writer_base.saturating_add(clients);
        let first_sequences: Vec<u64> = writers
            .clone()
            .map(|writer| {
                let first = *self.next_sequence.get(&writer).unwrap_or(&1);
                self.next_sequence
                    .insert(writer, first + step.records_per_client);
                first
            })
            .collect();
        let shared = self.shared;
        std::thread::scope(|scope| {
            let handles: Vec<_> = writers
                .zip(first_sequences)
                .map(|(writer, first_sequence)| {
                    let phase = phase.clone();
                    scope.spawn(move || {
                        let mut rng = ChaCha8Rng::seed_from_u64(seed);
                        rng.set_stream(ingest_stream(index, writer));
                        run_client(shared, &phase, addr, writer, first_sequence, step, &mut rng)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ExecError::Contract {
                            phase: phase.clone(),
                            message: "an ingest client thread panicked".into(),
                        })
                    })
                })
                .collect()
        })
    }

    /// After the clients: the ledger holds exactly LSNs 1 to the last one expected.
    fn check_ingested(&mut self, step: &IngestStep, phase: &Phase) -> Result<(), ExecError> {
        let total = step.clients * step.records_per_client;
        let expected_last = self.next_lsn - 1 + total;
        let (ledger_len, last_lsn) = {
            let ledger = self.shared.ledger();
            (
                ledger.len() as u64,
                ledger.keys().next_back().copied().unwrap_or(0),
            )
        };
        if ledger_len != expected_last || last_lsn != expected_last {
            return Err(ExecError::Contract {
                phase: phase.clone(),
                message: format!(
                    "after ingest {ledger_len} records are acknowledged up to LSN {last_lsn}, \
                     expected LSNs 1..={expected_last}"
                ),
            });
        }
        self.next_lsn += total;
        Ok(())
    }
}

/// One ingest client: sends its records one at a time, acking each on the server's reply.
/// Returns (records, payload bytes).
fn run_client(
    shared: &Shared<'_>,
    phase: &Phase,
    addr: SocketAddr,
    writer: u32,
    first_sequence: u64,
    step: &IngestStep,
    rng: &mut ChaCha8Rng,
) -> Result<(u64, u64), ExecError> {
    let seed = shared.workload.seed;
    let client_err = |sequence| {
        move |source| ExecError::Client {
            phase: phase.clone(),
            client: writer,
            sequence,
            source,
        }
    };
    let mut client =
        powercut_writer::server::Client::connect(addr).map_err(client_err(first_sequence))?;
    let mut bytes_total = 0u64;
    for sequence in first_sequence..first_sequence + step.records_per_client {
        let len_bytes = draw_size(rng, step.size);
        let bytes = payload::derive(seed, writer, sequence, len_bytes);
        let lsn = client.append(&bytes).map_err(client_err(sequence))?;
        let crc = crc32c::crc32c(&bytes);
        shared.ack(
            phase,
            &Ack::Records {
                first_lsn: lsn,
                last_lsn: lsn,
                crc32c: crc,
            },
        )?;
        let identity = RecordIdentity {
            writer,
            sequence,
            len_bytes,
            crc32c: crc,
        };
        let mut ledger = shared.ledger();
        if let Some(previous) = ledger.insert(lsn, identity) {
            return Err(ExecError::Contract {
                phase: phase.clone(),
                message: format!(
                    "LSN {lsn} returned twice: writer {} sequence {} and writer {writer} sequence \
                     {sequence}",
                    previous.writer, previous.sequence
                ),
            });
        }
        bytes_total += len_bytes as u64;
    }
    Ok((step.records_per_client, bytes_total))
}

/// Waits (bounded) until the server's threads have dropped their references to the journal.
fn take_back(mut journal: Arc<Journal>) -> Option<Journal> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Arc::try_unwrap(journal) {
            Ok(journal) => return Some(journal),
            Err(still_shared) => {
                if Instant::now() > deadline {
                    return None;
                }
                journal = still_shared;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// RNG stream of ingest client `writer` in step `index` (stream 0 is the main appender).
fn ingest_stream(index: usize, writer: u32) -> u64 {
    ((index as u64 + 1) << 16) | u64::from(writer)
}
