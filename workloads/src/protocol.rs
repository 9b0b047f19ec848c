//! Messages between the guest agent and the host.
//!
//! Host to guest: the job disk (`/dev/vdc`, virtio serial `pc-job`) holds one header line
//! `powercut-job 1 LEN\n` followed by LEN bytes of job JSON, zero padded to whole sectors. The
//! job JSON is the workload itself (a run from a freshly formatted disk), or, for the run after a
//! power cut (invariant I8), `{"continue_after_crash": {"prior_acks": [ACK, ..]}, "workload":
//! WORKLOAD}`: mount the crash image, recover, check the first run's acks, run the after-crash
//! steps. See [`Job`].
//!
//! Guest to host: lines on the serial console, `@@powercut {json}`. The console also carries
//! kernel and init output, and the tty turns `\n` into `\r\n`, so the host looks for the prefix
//! in each line (firmware escape sequences may precede it), strips a trailing `\r` and ignores
//! every other line.

use std::io::Read;

use crate::ack::Ack;
use crate::executor::RunFinding;
use crate::spec::Workload;

/// Prefix of every agent line on the console.
pub const LINE_PREFIX: &str = "@@powercut ";
/// First word of the job disk header.
pub const JOB_MAGIC: &str = "powercut-job";
/// Job disk format version.
pub const JOB_VERSION: u32 = 1;
/// Upper bound on the job JSON, so a garbled header never makes the guest allocate without bound.
pub const MAX_JOB_BYTES: usize = 16 << 20;
/// Upper bound on one console line the host keeps (a longer line is cut, never buffered forever).
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// The header line is short; this bounds how far the reader looks for its newline.
const MAX_HEADER_BYTES: usize = 64;

/// One message from the agent.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestMessage {
    /// The agent started; `uptime_s` is the guest kernel's uptime at that moment (boot-to-agent).
    Ready {
        /// Guest kernel uptime when the agent started, in seconds.
        uptime_s: f64,
        /// The guest kernel's release.
        kernel: String,
    },
    /// A step of the agent or of the executor (free-form, shown to the user).
    Progress {
        /// What is being done.
        what: String,
        /// Details, free-form JSON.
        detail: serde_json::Value,
    },
    /// Acknowledgement number `index` (from 1), already written as a MARK into the block log.
    Ack {
        /// The ack's number, from 1.
        index: u64,
        /// The MARK label written into the block log.
        label: String,
        /// The fact acknowledged.
        ack: crate::ack::Ack,
    },
    /// The workload finished, the file system is unmounted and the log device removed.
    Done(DoneReport),
    /// The agent failed; `message` names the failed operation.
    Error {
        /// What failed, naming the operation.
        message: String,
    },
    /// After a power cut: the recovered state breaks an ack of the first run. Also, with
    /// invariant `I7`, a finding of the run itself after an injected fault.
    // The wire name predates the I7 and reopen findings; hosts and recordings parse it.
    #[serde(rename = "prior_violation")]
    RunFinding(RunFinding),
}

/// Key of the continuation envelope in the job JSON.
const CONTINUE_KEY: &str = "continue_after_crash";

/// What the agent is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Run the workload's steps on a freshly formatted data disk.
    Fresh(Workload),
    /// Reboot on a crash image: recover, check `prior_acks` (the first run's acks), run the
    /// workload's after-crash steps.
    ContinueAfterCrash {
        /// The workload whose after-crash steps run.
        workload: Workload,
        /// The acks of the first run, to check on the recovered state.
        prior_acks: Vec<Ack>,
    },
}

impl Job {
    /// The workload of either kind of job.
    pub fn workload(&self) -> &Workload {
        match self {
            Job::Fresh(w) | Job::ContinueAfterCrash { workload: w, .. } => w,
        }
    }

    /// The job JSON the host writes to the job disk.
    pub fn to_json(&self) -> String {
        match self {
            Job::Fresh(w) => w.to_json(),
            Job::ContinueAfterCrash {
                workload,
                prior_acks,
            } => {
                // The workload JSON is valid JSON by construction; acks always serialize.
                let workload: serde_json::Value =
                    serde_json::from_str(&workload.to_json()).unwrap_or(serde_json::Value::Null);
                serde_json::json!({
                    CONTINUE_KEY: { "prior_acks": prior_acks },
                    "workload": workload,
                })
                .to_string()
            }
        }
    }

    /// Parses job JSON, with the workload's own checks.
    pub fn from_json(text: &str) -> Result<Job, ProtocolError> {
        let bad = |reason: String| ProtocolError::BadJob { reason };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let Some(envelope) = value.get(CONTINUE_KEY) else {
            return Workload::from_json(text)
                .map(Job::Fresh)
                .map_err(|e| bad(e.to_string()));
        };
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Continuation {
            prior_acks: Vec<Ack>,
        }
        let continuation: Continuation = serde_json::from_value(envelope.clone())
            .map_err(|e| bad(format!("{CONTINUE_KEY}: {e}")))?;
        let workload = value
            .get("workload")
            .ok_or_else(|| bad("no workload beside the continuation".into()))?;
        let workload =
            Workload::from_json(&workload.to_string()).map_err(|e| bad(e.to_string()))?;
        Ok(Job::ContinueAfterCrash {
            workload,
            prior_acks: continuation.prior_acks,
        })
    }
}

/// What the agent reports at the end of a clean run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DoneReport {
    /// Acks written as marks (and sent as `Ack` lines).
    pub acks: u64,
    /// dm-log-writes status after the unmount: entries logged so far.
    pub log_entries: u64,
    /// dm-log-writes status after the unmount: highest log sector allocated.
    pub log_last_sector: u64,
    /// dm-log-writes disabled logging (log device full or a log write failed).
    pub logging_disabled: bool,
    /// Kernel log lines about dm-log-writes errors ("Ran out of space on the logdev", ...).
    pub kernel_errors: Vec<String>,
    /// Seconds spent in the executor.
    pub workload_s: f64,
    /// The executor's own summary, as JSON.
    pub summary: serde_json::Value,
}

impl GuestMessage {
    /// The console line for this message, without the line ending.
    pub fn to_line(&self) -> String {
        // Serializing these types cannot fail: every map key is a string.
        let json = serde_json::to_string(self).expect("guest message serializes");
        format!("{LINE_PREFIX}{json}")
    }

    /// Parses one console line. `None`: not an agent line (kernel or init output).
    /// `Some(Err)`: an agent line whose JSON is broken.
    pub fn parse_line(line: &str) -> Option<Result<GuestMessage, ProtocolError>> {
        let line = line.trim_end_matches(['\r', '\n']);
        // Firmware escape sequences or an unterminated kernel message may precede the prefix.
        let json = &line[line.find(LINE_PREFIX)? + LINE_PREFIX.len()..];
        Some(
            serde_json::from_str(json).map_err(|e| ProtocolError::BadLine {
                line: line.chars().take(200).collect(),
                reason: e.to_string(),
            }),
        )
    }
}

/// Errors of the job disk and console protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A console line is not a message.
    #[error("agent console line {line:?} is not a valid message: {reason}")]
    BadLine {
        /// The line.
        line: String,
        /// Why it is not a message.
        reason: String,
    },
    /// The job disk header is invalid.
    #[error("job disk header at offset 0 is invalid: {reason}")]
    BadJobHeader {
        /// What is wrong with it.
        reason: String,
    },
    /// The job is larger than MAX_JOB_BYTES.
    #[error("job of {len_bytes} bytes exceeds the limit of {MAX_JOB_BYTES} bytes")]
    JobTooLarge {
        /// The job's length from the header.
        len_bytes: u64,
    },
    /// The job JSON is invalid.
    #[error("job JSON: {reason}")]
    BadJob {
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the job disk failed.
    #[error("reading the job disk at offset {offset}: {source}")]
    Read {
        /// Byte offset of the read.
        offset: u64,
        /// Cause.
        source: std::io::Error,
    },
}

/// The job disk image for `job_json`: header line, JSON, zeros up to a multiple of 512 bytes.
pub fn encode_job(job_json: &[u8]) -> Vec<u8> {
    let mut out = format!("{JOB_MAGIC} {JOB_VERSION} {}\n", job_json.len()).into_bytes();
    out.extend_from_slice(job_json);
    let padded = out.len().div_ceil(512) * 512;
    out.resize(padded.max(512), 0);
    out
}

/// Reads a job written by [`encode_job`] from the start of `disk`.
pub fn decode_job(disk: &mut dyn Read) -> Result<Vec<u8>, ProtocolError> {
    let mut header = Vec::with_capacity(MAX_HEADER_BYTES);
    let mut byte = [0u8; 1];
    loop {
        let n = disk.read(&mut byte).map_err(|source| ProtocolError::Read {
            offset: header.len() as u64,
            source,
        })?;
        if n == 0 {
            return Err(ProtocolError::BadJobHeader {
                reason: "end of disk before newline".into(),
            });
        }
        if byte[0] == b'\n' {
            break;
        }
        header.push(byte[0]);
        if header.len() > MAX_HEADER_BYTES {
            return Err(ProtocolError::BadJobHeader {
                reason: "no newline in 64 bytes".into(),
            });
        }
    }
    let header = std::str::from_utf8(&header).map_err(|_| ProtocolError::BadJobHeader {
        reason: "not UTF-8".into(),
    })?;
    let mut words = header.split(' ');
    if words.next() != Some(JOB_MAGIC) {
        return Err(ProtocolError::BadJobHeader {
            reason: format!("no {JOB_MAGIC} magic"),
        });
    }
    let version = words.next().and_then(|w| w.parse::<u32>().ok());
    if version != Some(JOB_VERSION) {
        return Err(ProtocolError::BadJobHeader {
            reason: format!("version {version:?}"),
        });
    }
    let len_bytes: u64 =
        words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| ProtocolError::BadJobHeader {
                reason: "no length".into(),
            })?;
    if words.next().is_some() {
        return Err(ProtocolError::BadJobHeader {
            reason: "extra words".into(),
        });
    }
    if len_bytes > MAX_JOB_BYTES as u64 {
        return Err(ProtocolError::JobTooLarge { len_bytes });
    }
    let offset = header.len() as u64 + 1;
    let mut json = vec![0u8; len_bytes as usize];
    disk.read_exact(&mut json)
        .map_err(|source| ProtocolError::Read { offset, source })?;
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Ack;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip_through_console_lines() {
        let messages = [
            GuestMessage::Ready {
                uptime_s: 1.25,
                kernel: "6.1.0".into(),
            },
            GuestMessage::Ack {
                index: 3,
                label: "r:1-2:0000abcd".into(),
                ack: Ack::Records {
                    first_lsn: 1,
                    last_lsn: 2,
                    crc32c: 0xabcd,
                },
            },
            GuestMessage::Error {
                message: "mount /mnt: EINVAL".into(),
            },
            GuestMessage::Done(DoneReport {
                acks: 2,
                log_entries: 10,
                log_last_sector: 99,
                logging_disabled: false,
                kernel_errors: vec![],
                workload_s: 0.5,
                summary: serde_json::json!({"records": 2}),
            }),
        ];
        for message in messages {
            // The tty adds \r before \n.
            let line = format!("{}\r", message.to_line());
            assert_eq!(GuestMessage::parse_line(&line).unwrap().unwrap(), message);
        }
        assert!(GuestMessage::parse_line("[    1.0] virtio_blk virtio1: [vda]").is_none());
        assert!(GuestMessage::parse_line("@@powercut {\"type\":\"nope\"}")
            .unwrap()
            .is_err());
    }

    #[test]
    fn job_round_trips_and_is_sector_padded() {
        let json = br#"{"name":"smoke"}"#;
        let disk = encode_job(json);
        assert_eq!(disk.len() % 512, 0);
        assert_eq!(decode_job(&mut &disk[..]).unwrap(), json);
    }

    #[test]
    fn bad_job_headers_are_errors() {
        let too_large = format!("{JOB_MAGIC} 1 {}\n", MAX_JOB_BYTES + 1);
        for bad in [
            &b""[..],
            b"nothing\n",
            b"powercut-job 2 3\nabc",
            b"powercut-job 1\n",
            b"powercut-job 1 9\nabc",
        ] {
            assert!(decode_job(&mut &bad[..]).is_err(), "{bad:?}");
        }
        assert!(matches!(
            decode_job(&mut too_large.as_bytes()),
            Err(ProtocolError::JobTooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_job(&mut &bytes[..]);
        }

        #[test]
        fn parsing_arbitrary_lines_never_panics(s in ".{0,300}") {
            let _ = GuestMessage::parse_line(&s);
            let _ = GuestMessage::parse_line(&format!("{LINE_PREFIX}{s}"));
        }
    }
}
