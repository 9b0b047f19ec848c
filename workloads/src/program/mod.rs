//! The ack protocol of programs under test: what a program writes on the file descriptor named
//! by `POWERCUT_ACK_FD`, one line per durability promise, in the order it makes them.
//!
//! ```text
//! ack KEY DIGEST [NOTE...]   KEY now holds the value whose digest is DIGEST, durably
//! nack KEY [NOTE...]         an operation on KEY failed: its value is unknown until the next ack
//! ```
//!
//! Words are separated by spaces or tabs; a trailing `\r` is ignored; whatever follows the
//! digest (or the key of a `nack`) is a note the harness ignores, so `echo "ack k1 $(sha256sum
//! f)" >&$POWERCUT_ACK_FD` (digest, then the file name) is a valid line. KEY is 1 to
//! [`MAX_KEY_BYTES`] printable ASCII characters other than `:`; DIGEST is 1 to
//! [`MAX_DIGEST_BYTES`] of letters, digits and `+/=._-` (hex, base64 or the value itself).
//! Anything else is an error that names the line: a promise is never dropped silently.

use crate::ack::Ack;

pub mod kv;

/// Longest key of an ack line.
pub const MAX_KEY_BYTES: usize = 200;
/// Longest digest of an ack line (a SHA-512 in hex is 128).
pub const MAX_DIGEST_BYTES: usize = 128;
/// Longest line a program may write on its ack channel, newline excluded.
pub const MAX_ACK_LINE_BYTES: usize = 4096;

/// An ack line that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed ack line {line}: {reason} (in {text:?})")]
pub struct AckLineError {
    /// 1-based number of the line on the program's ack channel.
    pub line: u64,
    /// The line as read (cut to 120 characters, invalid UTF-8 replaced).
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Whether `key` may name a key: 1 to [`MAX_KEY_BYTES`] printable ASCII characters, no `:`.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && key.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// Whether `digest` may be a digest: 1 to [`MAX_DIGEST_BYTES`] of `A-Za-z0-9+/=._-`.
pub fn is_valid_digest(digest: &str) -> bool {
    !digest.is_empty()
        && digest.len() <= MAX_DIGEST_BYTES
        && digest.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'.' | b'_' | b'-')
        })
}

/// Parses line number `number` (1-based) of a program's ack channel, without its `\n`.
pub fn parse_ack_line(number: u64, raw: &[u8]) -> Result<Ack, AckLineError> {
    let err = |reason: String| AckLineError {
        line: number,
        text: String::from_utf8_lossy(raw).chars().take(120).collect(),
        reason,
    };
    if raw.len() > MAX_ACK_LINE_BYTES {
        return Err(err(format!("longer than {MAX_ACK_LINE_BYTES} bytes")));
    }
    let text = std::str::from_utf8(raw).map_err(|_| err("not UTF-8".into()))?;
    let text = text.strip_suffix('\r').unwrap_or(text);
    let mut words = text.split([' ', '\t']).filter(|w| !w.is_empty());
    let verb = words
        .next()
        .ok_or_else(|| err("empty line: expected `ack KEY DIGEST` or `nack KEY`".into()))?;
    let key = words
        .next()
        .ok_or_else(|| err(format!("`{verb}` needs a key")))?;
    if !is_valid_key(key) {
        return Err(err(format!(
            "key {key:?}: 1 to {MAX_KEY_BYTES} printable ASCII characters other than ':'"
        )));
    }
    match verb {
        "ack" => {
            let digest = words
                .next()
                .ok_or_else(|| err("`ack` needs a digest after the key".into()))?;
            if !is_valid_digest(digest) {
                return Err(err(format!(
                    "digest {digest:?}: 1 to {MAX_DIGEST_BYTES} of letters, digits and +/=._-"
                )));
            }
            Ok(Ack::Key {
                key: key.to_string(),
                digest: digest.to_string(),
            })
        }
        "nack" => Ok(Ack::Nack {
            key: key.to_string(),
        }),
        other => Err(err(format!(
            "unknown verb {other:?}: expected `ack KEY DIGEST` or `nack KEY`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_lines() {
        let ack = |k: &str, d: &str| Ack::Key {
            key: k.into(),
            digest: d.into(),
        };
        assert_eq!(parse_ack_line(1, b"ack k1 abc").unwrap(), ack("k1", "abc"));
        assert_eq!(
            parse_ack_line(1, b"ack  row/7\t0f3a  data/f.txt\r").unwrap(),
            ack("row/7", "0f3a")
        );
        assert_eq!(
            parse_ack_line(2, b"nack k1 write failed").unwrap(),
            Ack::Nack { key: "k1".into() }
        );
    }

    #[test]
    fn malformed_lines_name_the_line() {
        for (raw, reason) in [
            (&b""[..], "empty line"),
            (b"ack", "needs a key"),
            (b"ack k1", "needs a digest"),
            (b"ack k:1 abc", "key"),
            (b"ack k1 ab*c", "digest"),
            (b"ACK k1 abc", "unknown verb"),
            (b"ack k1 \xff", "not UTF-8"),
        ] {
            let e = parse_ack_line(7, raw).unwrap_err();
            assert_eq!(e.line, 7);
            assert!(e.reason.contains(reason), "{raw:?}: {e}");
            assert!(e.to_string().contains("line 7"), "{e}");
        }
        let long = vec![b'a'; MAX_ACK_LINE_BYTES + 1];
        assert!(parse_ack_line(1, &long).is_err());
    }

    proptest! {
        /// Any bytes: an error or an ack whose label parses back to it (fuzzing the parser).
        #[test]
        fn any_bytes_parse_or_fail_cleanly(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(ack) = parse_ack_line(1, &raw) {
                let label = ack.to_label();
                prop_assert!(label.len() <= crate::ack::MAX_LABEL_BYTES);
                prop_assert_eq!(Ack::parse_label(&label).unwrap(), ack);
            }
        }

        /// Lines built from the grammar always parse to what they say.
        #[test]
        fn grammar_lines_parse(
            key in "[!-9;-~]{1,200}",
            digest in "[A-Za-z0-9+/=._-]{1,128}",
            note in "( [a-z./]{0,20}){0,3}",
        ) {
            let line = format!("ack {key} {digest}{note}");
            let ack = parse_ack_line(3, line.as_bytes()).unwrap();
            prop_assert_eq!(ack, Ack::Key { key: key.clone(), digest });
            let nack = parse_ack_line(4, format!("nack {key}").as_bytes()).unwrap();
            prop_assert_eq!(nack, Ack::Nack { key });
        }
    }
}
