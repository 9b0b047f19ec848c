//! Appending: a record is encoded into the active staging buffer under the state lock and
//! gets its LSN; it becomes durable with a later group commit.

use std::sync::MutexGuard;

use super::state::{check_usable, State};
use super::{lock, Inner};
use crate::error::JournalError;
use crate::record;
use crate::Lsn;

impl Inner {
    pub(super) fn append(&self, payload: &[u8]) -> Result<Lsn, JournalError> {
        self.append_locked(payload).map(|(_, lsn)| lsn)
    }

    /// [`Inner::append`] that returns with the state lock still held.
    pub(super) fn append_locked(
        &self,
        payload: &[u8],
    ) -> Result<(MutexGuard<'_, State>, Lsn), JournalError> {
        if payload.len() > self.max_payload_bytes {
            return Err(JournalError::RecordTooLarge {
                len_bytes: payload.len(),
                limit_bytes: self.max_payload_bytes,
            });
        }
        let span = record::record_span_bytes(payload.len());
        let mut state = self.wait_for_room(lock(&self.state), span)?;
        let lsn = state.next_lsn;
        let at = state.active_len;
        assert!(at + span <= state.active.capacity(), "staging bound");
        let synced = state.durable_lsn;
        let generation = state.generation;
        record::encode_record(
            &mut state.active[at..at + span],
            lsn,
            synced,
            generation,
            payload,
        );
        if state.active_len == state.active_new_from {
            state.first_staged_at = Some(std::time::Instant::now());
        }
        state.active_len += span;
        state.next_lsn += 1;
        state.records_in_segment += 1;
        Ok((state, lsn))
    }

    /// Returns once the active buffer and the current segment have room for a record of
    /// `span` bytes, running or waiting for the group commits and the rotation that make it.
    fn wait_for_room<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        span: usize,
    ) -> Result<MutexGuard<'a, State>, JournalError> {
        loop {
            check_usable(&state)?;
            if state.rotate_requested {
                let wait = state.in_flight > 0;
                state = self.wait_or_lead(state, wait)?;
                continue;
            }
            // One block of slack: a group may move to the next block boundary (see `lead`).
            let end = state.active_base + (state.active_len + span + self.alignment) as u64;
            if end > self.segment_bytes {
                state.rotate_requested = true;
                continue;
            }
            if state.active_len + span + self.alignment > state.active.capacity() {
                // Staging is full: wait for (or run) the flush that empties it.
                let wait = !self.can_lead(&state);
                state = self.wait_or_lead(state, wait)?;
                continue;
            }
            return Ok(state);
        }
    }

    /// Waits for the state to change if `wait`, else runs a group commit (or the rotation) itself.
    fn wait_or_lead<'a>(
        &'a self,
        state: MutexGuard<'a, State>,
        wait: bool,
    ) -> Result<MutexGuard<'a, State>, JournalError> {
        if wait {
            return Ok(self.wait_changed(state));
        }
        let (next, result) = self.lead(state);
        result?;
        Ok(next)
    }
}
