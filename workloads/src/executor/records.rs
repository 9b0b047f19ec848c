//! Records of the main appender: appended alone and durable, or in groups that one commit
//! acknowledges; and the checkpoint (`retire`) that lets their segments go.

use std::sync::atomic::Ordering;

use super::error::{ExecError, Phase};
use super::ledger::RecordIdentity;
use super::run::{draw_size, Run};
use super::MAIN_WRITER;
use crate::ack::Ack;
use crate::payload;
use crate::spec::SizeRange;

/// Records of one group, appended and not yet in the ledger.
struct Group {
    first_lsn: u64,
    last_lsn: u64,
    /// crc32c of the payloads in LSN order.
    crc32c: u32,
    identities: Vec<(u64, RecordIdentity)>,
}

impl Run<'_, '_> {
    /// An `append:` step: `count` records, acked one by one (`commit_every` 1) or by groups.
    pub(super) fn append(
        &mut self,
        phase: &Phase,
        count: u64,
        size: SizeRange,
        commit_every: u64,
    ) -> Result<(), ExecError> {
        let mut remaining = count;
        while remaining > 0 {
            let group = remaining.min(commit_every);
            remaining -= group;
            // `None` or `false`: a call failed under a fault or a poisoned journal accepted
            // one; that is handled, and the step ends there.
            let Some(group) = self.append_group(phase, group, size, commit_every)? else {
                return Ok(());
            };
            if commit_every > 1 && !self.commit_group(phase, &group)? {
                return Ok(());
            }
            for (lsn, identity) in group.identities {
                self.shared.record(lsn, identity);
            }
        }
        Ok(())
    }

    /// Appends the `count` records of a group; `None` when the step ends early.
    fn append_group(
        &mut self,
        phase: &Phase,
        count: u64,
        size: SizeRange,
        commit_every: u64,
    ) -> Result<Option<Group>, ExecError> {
        let mut group = Group {
            first_lsn: self.next_lsn,
            last_lsn: 0,
            crc32c: 0,
            identities: Vec::new(),
        };
        for _ in 0..count {
            let Some((lsn, bytes, identity)) =
                self.append_record(phase, size, commit_every, &group.identities)?
            else {
                return Ok(None);
            };
            if lsn != self.next_lsn {
                return Err(ExecError::Contract {
                    phase: phase.clone(),
                    message: format!("record got LSN {lsn}, expected {}", self.next_lsn),
                });
            }
            self.next_lsn += 1;
            group.last_lsn = lsn;
            group.crc32c = crc32c::crc32c_append(group.crc32c, &bytes);
            group.identities.push((lsn, identity));
            self.summary.records += 1;
            self.summary.record_bytes += identity.len_bytes as u64;
        }
        Ok(Some(group))
    }

    /// Appends one record (durably and acked at once when `commit_every` is 1); `None` when
    /// the step ends early, `earlier` being the records of the group appended before it.
    fn append_record(
        &mut self,
        phase: &Phase,
        size: SizeRange,
        commit_every: u64,
        earlier: &[(u64, RecordIdentity)],
    ) -> Result<Option<(u64, Vec<u8>, RecordIdentity)>, ExecError> {
        let len_bytes = draw_size(&mut self.main_rng, size);
        let writer = self.writer_base + MAIN_WRITER;
        let sequence = self.next_sequence(writer);
        let bytes = payload::derive(self.shared.workload.seed, writer, sequence, len_bytes);
        let journal = self.journal(phase)?;
        let (op, result) = if commit_every == 1 {
            ("append_durable", journal.append_durable(&bytes))
        } else {
            ("append", journal.append(&bytes))
        };
        let lsn = match result {
            Ok(_) if self.poisoned => {
                self.accepted_while_poisoned(phase, op);
                return Ok(None);
            }
            Ok(lsn) => lsn,
            Err(source) => {
                self.uncount(earlier);
                let unacked = earlier.len() as u64 + 1;
                self.failed_under_fault(phase, op, source, unacked)?;
                return Ok(None);
            }
        };
        let record_crc = crc32c::crc32c(&bytes);
        if commit_every == 1 {
            // Acknowledged durable: the sink goes first, checks after.
            self.shared.ack(
                phase,
                &Ack::Records {
                    first_lsn: lsn,
                    last_lsn: lsn,
                    crc32c: record_crc,
                },
            )?;
        }
        let identity = RecordIdentity {
            writer,
            sequence,
            len_bytes,
            crc32c: record_crc,
        };
        Ok(Some((lsn, bytes, identity)))
    }

    /// Commits a group and acks it; `false` when the step ends early.
    fn commit_group(&mut self, phase: &Phase, group: &Group) -> Result<bool, ExecError> {
        let durable = match self.journal(phase)?.commit() {
            Ok(_) if self.poisoned => {
                self.accepted_while_poisoned(phase, "commit");
                return Ok(false);
            }
            Ok(durable) => durable,
            Err(source) => {
                self.uncount(&group.identities);
                let unacked = group.identities.len() as u64;
                self.failed_under_fault(phase, "commit", source, unacked)?;
                return Ok(false);
            }
        };
        self.shared.ack(
            phase,
            &Ack::Records {
                first_lsn: group.first_lsn,
                last_lsn: group.last_lsn,
                crc32c: group.crc32c,
            },
        )?;
        if durable < group.last_lsn {
            return Err(ExecError::Contract {
                phase: phase.clone(),
                message: format!(
                    "commit returned durable LSN {durable} below the last appended {}",
                    group.last_lsn
                ),
            });
        }
        Ok(true)
    }

    /// A checkpoint: every record so far is acknowledged, so every sealed segment can go.
    pub(super) fn retire(&mut self, phase: &Phase) -> Result<(), ExecError> {
        let before_lsn = self.next_lsn;
        match self.journal(phase)?.retire_before(before_lsn) {
            Ok(_) if self.poisoned => {
                self.accepted_while_poisoned(phase, "retire_before");
                Ok(())
            }
            Ok(_) => {
                self.shared
                    .retired_before
                    .fetch_max(before_lsn, Ordering::SeqCst);
                self.summary.acks += 1;
                self.shared.ack(phase, &Ack::Retired { before_lsn })
            }
            Err(source) => self.failed_under_fault(phase, "retire_before", source, 0),
        }
    }
}
