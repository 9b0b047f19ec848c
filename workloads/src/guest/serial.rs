//! Agent lines on the serial console.

use std::io::Write;
use std::sync::Mutex;

use crate::protocol::GuestMessage;

/// Writes [`GuestMessage`]s to a console, one whole line per write so lines from several threads
/// never interleave.
#[derive(Debug)]
pub struct Console<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> Console<W> {
    /// A console writing to `out`.
    pub fn new(out: W) -> Self {
        Console {
            out: Mutex::new(out),
        }
    }

    /// Sends one message. A console that cannot be written is not worth failing the run for (the
    /// block log is the record); the error is returned for callers that care.
    pub fn send(&self, message: &GuestMessage) -> std::io::Result<()> {
        let mut line = message.to_line();
        line.push('\n');
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        out.write_all(line.as_bytes())?;
        out.flush()
    }

    /// Writes a plain (non-protocol) line, e.g. a copied kernel message.
    pub fn plain(&self, text: &str) -> std::io::Result<()> {
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        writeln!(out, "{text}")?;
        out.flush()
    }

    /// The writer back (tests).
    pub fn into_inner(self) -> W {
        self.out
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_back() {
        let console = Console::new(Vec::new());
        console
            .send(&GuestMessage::Error {
                message: "x".into(),
            })
            .unwrap();
        console.plain("kernel: hello").unwrap();
        let text = String::from_utf8(console.into_inner()).unwrap();
        let mut lines = text.lines();
        let first = GuestMessage::parse_line(lines.next().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            first,
            GuestMessage::Error {
                message: "x".into()
            }
        );
        assert!(GuestMessage::parse_line(lines.next().unwrap()).is_none());
    }
}
