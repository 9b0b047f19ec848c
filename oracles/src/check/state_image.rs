//! Building the image of one crash state: the base image, the durable prefix replayed, then the
//! entries the state applies beyond it (whole or torn).

use std::fs::OpenOptions;
use std::path::Path;

use crate::blocklog::BlockLog;
use crate::crash::{self, CrashState, StateId};
use crate::outcome::CheckError;
use crate::replay::{apply_entry, clone_image, ReplayError, Replayer};

/// Builds the image of `state` into `out` from scratch (repro): copy `base`, replay the durable
/// prefix, apply the chosen entries.
pub fn build_state_image(
    log: &BlockLog,
    base: &Path,
    state: &CrashState,
    out: &Path,
) -> Result<(), ReplayError> {
    clone_image(base, out)?;
    let mut r = Replayer::new(log, out)?;
    r.advance_to(state.prefix_len)?;
    drop(r);
    apply_delta(log, state, out)
}

/// `powercut repro ID -o OUT` without mounting: parses the id, checks it belongs to the log, and
/// writes the crash image to `out`. Returns the resolved state.
pub fn rebuild_state(
    log_path: &Path,
    base_image: &Path,
    state_id: &str,
    out: &Path,
) -> Result<CrashState, CheckError> {
    let id: StateId = state_id.parse()?;
    let log = BlockLog::open(log_path)?;
    let state = crash::resolve(&log, &id)?;
    build_state_image(&log, base_image, &state, out)?;
    Ok(state)
}

/// Applies the entries of `state` beyond its durable prefix to `image`.
pub(super) fn apply_delta(
    log: &BlockLog,
    state: &CrashState,
    image: &Path,
) -> Result<(), ReplayError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|source| ReplayError::Io {
            op: "open state image",
            path: image.to_path_buf(),
            offset: 0,
            source,
        })?;
    let len = f
        .metadata()
        .map_err(|source| ReplayError::Io {
            op: "stat state image",
            path: image.to_path_buf(),
            offset: 0,
            source,
        })?
        .len();
    let mut buf = Vec::new();
    for a in &state.applied {
        let e = &log.entries()[a.index as usize];
        apply_entry(log, e, &f, image, len, a.mask.as_deref(), &mut buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklog::{LogWriter, FLAG_FUA};
    use crate::crash::EnumConfig;

    /// Every enumerated state, rebuilt from its printed id alone, equals the model: the durable
    /// prefix, then the FUA and chosen writes, the torn one only in its masked units.
    #[test]
    fn state_images_match_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut w = LogWriter::create(&p, 512).unwrap();
        for i in 0..14u64 {
            let data: Vec<u8> = (0..512 * (1 + i % 3)).map(|b| (b * 7 + i) as u8).collect();
            w.write((i * 5) % 40, &data, if i % 5 == 4 { FLAG_FUA } else { 0 })
                .unwrap();
            if i % 4 == 3 {
                w.flush().unwrap();
            }
            if i % 6 == 5 {
                w.mark("s:m").unwrap();
            }
        }
        w.finish(None, 0).unwrap();
        let log = BlockLog::open(&p).unwrap();
        let base = dir.path().join("base");
        std::fs::write(&base, vec![0xAAu8; 48 * 512]).unwrap();
        let en = crash::enumerate(
            &log,
            &EnumConfig {
                torn_samples: 3,
                atomic_write_bytes: 512,
                ..EnumConfig::default()
            },
        );
        assert!(en.states.len() > 30);
        let out = dir.path().join("state");
        for st in &en.states {
            let again = crash::resolve(&log, &st.id.to_string().parse().unwrap()).unwrap();
            build_state_image(&log, &base, &again, &out).unwrap();
            let mut model = vec![0xAAu8; 48 * 512];
            let mut put = |e: &crate::blocklog::Entry, mask: Option<&Vec<bool>>| {
                let data = log.read_data(e).unwrap();
                for u in 0..e.nr_sectors as usize {
                    if mask.is_none_or(|m| m[u]) {
                        let o = e.target_offset_bytes as usize + u * 512;
                        model[o..o + 512].copy_from_slice(&data[u * 512..(u + 1) * 512]);
                    }
                }
            };
            for e in &log.entries()[..st.prefix_len as usize] {
                if e.has_data() {
                    put(e, None);
                }
            }
            for a in &st.applied {
                put(&log.entries()[a.index as usize], a.mask.as_ref());
            }
            assert_eq!(std::fs::read(&out).unwrap(), model, "state {}", st.id);
            let via_path = dir.path().join("rebuilt");
            rebuild_state(&p, &base, &st.id.to_string(), &via_path).unwrap();
            assert_eq!(std::fs::read(&via_path).unwrap(), model);
        }
        assert!(matches!(
            rebuild_state(&p, &base, "00000000-c1-p", &out),
            Err(CheckError::Resolve(_))
        ));
        assert!(matches!(
            rebuild_state(&p, &base, "nonsense", &out),
            Err(CheckError::StateId(_))
        ));
    }
}
