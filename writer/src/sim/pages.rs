//! File contents of the simulated file system as shared pages: copying a file (a snapshot after
//! every operation, a crash state, a reader) copies one pointer per page, a write copies only
//! the pages it changes, and pages of zeros are not stored at all, so readers can be told where
//! the zeros are instead of reading them (what preallocated, zero-filled segments are made of).

use std::sync::Arc;

/// Bytes per page: small enough that a record's write copies little of a shared file, large
/// enough that a 64 MiB file is a few thousand pointers.
pub(crate) const PAGE_BYTES: usize = 16 * 1024;

/// One page of a file; `None` in a [`Pages`] is a page of zeros.
type Page = Arc<[u8; PAGE_BYTES]>;

/// Contents of one file: a length and its pages, zero pages left out.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pages {
    len: usize,
    pages: Vec<Option<Page>>,
}

impl Pages {
    /// Size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// ftruncate: bytes past a shrunk end are gone (a later growth reads zeros there).
    pub(crate) fn resize(&mut self, len: usize) {
        if len < self.len {
            // The kept part of the last page must read zeros past the new end.
            let page_end = len.div_ceil(PAGE_BYTES) * PAGE_BYTES;
            self.zero_range(len, self.len.min(page_end));
        }
        self.pages.resize(len.div_ceil(PAGE_BYTES), None);
        self.len = len;
    }

    /// Writes `bytes` at `offset`, growing the file when they end past it.
    pub(crate) fn write(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset + bytes.len();
        if self.len < end {
            self.resize(end);
        }
        let mut at = offset;
        while at < end {
            let (index, within) = (at / PAGE_BYTES, at % PAGE_BYTES);
            let piece = (PAGE_BYTES - within).min(end - at);
            let source = &bytes[at - offset..at - offset + piece];
            let slot = &mut self.pages[index];
            match slot {
                None if source.iter().all(|&b| b == 0) => {}
                None => {
                    let mut page = Arc::new([0u8; PAGE_BYTES]);
                    Arc::make_mut(&mut page)[within..within + piece].copy_from_slice(source);
                    *slot = Some(page);
                }
                Some(page) => {
                    Arc::make_mut(page)[within..within + piece].copy_from_slice(source);
                    if page.iter().all(|&b| b == 0) {
                        *slot = None;
                    }
                }
            }
            at += piece;
        }
    }

    /// Reads from `offset` into `buf`; returns the bytes read (fewer at the end of the file).
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) -> usize {
        let end = offset.saturating_add(buf.len()).min(self.len);
        let mut at = offset;
        while at < end {
            let (index, within) = (at / PAGE_BYTES, at % PAGE_BYTES);
            let piece = (PAGE_BYTES - within).min(end - at);
            let target = &mut buf[at - offset..at - offset + piece];
            match &self.pages[index] {
                Some(page) => target.copy_from_slice(&page[within..within + piece]),
                None => target.fill(0),
            }
            at += piece;
        }
        end.saturating_sub(offset)
    }

    /// The whole contents.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut data = vec![0u8; self.len];
        self.read(0, &mut data);
        data
    }

    /// The end of the run of zero pages that `offset` is in (`offset` itself when its page
    /// holds data): every byte in between is zero. Never past the end of the file.
    pub(crate) fn zeros_until(&self, offset: usize) -> usize {
        let mut index = offset / PAGE_BYTES;
        while index < self.pages.len() && self.pages[index].is_none() {
            index += 1;
        }
        if index == offset / PAGE_BYTES {
            return offset;
        }
        (index * PAGE_BYTES).min(self.len).max(offset)
    }

    /// Clears `[from, to)` (both within the pages).
    fn zero_range(&mut self, from: usize, to: usize) {
        if from < to {
            let zeros = vec![0u8; to - from];
            let len = self.len;
            self.write(from, &zeros);
            self.len = len;
        }
    }
}

impl PartialEq for Pages {
    fn eq(&self, other: &Pages) -> bool {
        self.len == other.len
            && self
                .pages
                .iter()
                .zip(&other.pages)
                .all(|(a, b)| match (a, b) {
                    (None, None) => true,
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                    // A stored page is never all zeros (writes drop those).
                    _ => false,
                })
    }
}

impl Eq for Pages {}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_write(model: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
        if model.len() < offset + bytes.len() {
            model.resize(offset + bytes.len(), 0);
        }
        model[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    #[test]
    fn matches_a_plain_vector_through_writes_resizes_and_copies() {
        let mut rng = crate::sim::SplitMix64::new(7);
        let (mut pages, mut model) = (Pages::default(), Vec::new());
        let mut copies = Vec::new();
        for step in 0..2_000u64 {
            let offset = rng.below(3 * PAGE_BYTES as u64) as usize;
            match rng.below(5) {
                0 => {
                    let len = rng.below(3 * PAGE_BYTES as u64) as usize;
                    pages.resize(len);
                    model.resize(len, 0);
                }
                1 => {
                    let zeros = vec![0u8; rng.below(2 * PAGE_BYTES as u64) as usize];
                    pages.write(offset, &zeros);
                    model_write(&mut model, offset, &zeros);
                }
                _ => {
                    let bytes: Vec<u8> = (0..rng.below(PAGE_BYTES as u64))
                        .map(|i| (i + step) as u8 | 1)
                        .collect();
                    pages.write(offset, &bytes);
                    model_write(&mut model, offset, &bytes);
                }
            }
            assert_eq!(pages.len(), model.len(), "step {step}");
            assert_eq!(pages.to_vec(), model, "step {step}");
            let z = pages.zeros_until(offset.min(model.len()));
            assert!(model[offset.min(model.len())..z].iter().all(|&b| b == 0));
            if step % 100 == 0 {
                copies.push((pages.clone(), model.clone()));
            }
        }
        for (copy, model) in copies {
            assert_eq!(copy.to_vec(), model, "a copy is unchanged by later writes");
        }
    }

    #[test]
    fn zero_pages_are_not_stored_and_compare_equal() {
        let mut a = Pages::default();
        a.write(0, &vec![0u8; 4 * PAGE_BYTES]);
        assert!(a.pages.iter().all(Option::is_none));
        assert_eq!(a.zeros_until(10), 4 * PAGE_BYTES);
        let mut b = a.clone();
        b.write(PAGE_BYTES + 3, &[1]);
        assert_ne!(a, b);
        assert_eq!(b.zeros_until(0), PAGE_BYTES);
        assert_eq!(b.zeros_until(PAGE_BYTES + 1), PAGE_BYTES + 1);
        b.write(PAGE_BYTES + 3, &[0]);
        assert_eq!(a, b);
        let mut part = [9u8; 8];
        assert_eq!(b.read(4 * PAGE_BYTES - 4, &mut part), 4);
        assert_eq!(&part[..4], &[0; 4]);
    }
}
