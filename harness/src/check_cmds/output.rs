//! What a check shows and writes: the progress bar, the summary line, the JSON and JUnit report
//! files, and text made safe for a terminal.

use anyhow::{Context, Result};
use powercut_oracles::check::Progress;
use powercut_oracles::report::Report;

use super::args::CheckArgs;
use crate::vm::progress::Meter;

/// Progress of a check's passes (coverage, states, the shrink's tries): one [`Meter`] per pass,
/// named `PREFIX` + the pass.
pub(crate) struct CheckMeters {
    prefix: &'static str,
    current: Option<(&'static str, Meter)>,
}

impl CheckMeters {
    /// Meters named `prefix` + the pass (e.g. `after-crash ` for the log after a power cut).
    pub(crate) fn new(prefix: &'static str) -> CheckMeters {
        CheckMeters {
            prefix,
            current: None,
        }
    }

    /// Shows `p`, on a new meter when its pass is not the one shown so far.
    pub(crate) fn on(&mut self, p: Progress) {
        if self
            .current
            .as_ref()
            .is_none_or(|(phase, _)| *phase != p.phase)
        {
            self.finish();
            let unit = if p.phase == "shrink" {
                "tries"
            } else {
                "states"
            };
            let meter = Meter::stderr(&format!("{}{}", self.prefix, p.phase), unit);
            self.current = Some((p.phase, meter));
        }
        if let Some((_, meter)) = &mut self.current {
            let note = if p.phase == "shrink" {
                String::new()
            } else {
                format!("{} violations", p.violations)
            };
            meter.update(p.states_done, p.states_total, &note);
        }
    }

    /// Ends the meter shown, if any.
    pub(crate) fn finish(&mut self) {
        if let Some((_, mut meter)) = self.current.take() {
            meter.finish();
        }
    }
}

/// Prints the summary line, then writes the report files.
pub(super) fn write_reports(report: &Report, args: &CheckArgs, invariants: &[&str]) -> Result<()> {
    println!("{}", report.summary());
    write_report_files(report, args, invariants)
}

/// Writes `--json` and `--junit` of `args`, if given.
pub(super) fn write_report_files(
    report: &Report,
    args: &CheckArgs,
    invariants: &[&str],
) -> Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    write_rendered(&json, report, args, invariants)
}

/// Writes the `--json` text of a report (already rendered) and its JUnit form, if asked.
pub(super) fn write_rendered(
    json: &str,
    report: &Report,
    args: &CheckArgs,
    invariants: &[&str],
) -> Result<()> {
    let html = args.html.as_ref().map(|p| p.display().to_string());
    if let Some(path) = &args.json {
        let json = match &html {
            Some(page) => with_html_key(json, page)?,
            None => json.to_string(),
        };
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JSON report: {}", path.display());
    }
    if let Some(path) = &args.junit {
        let text = report
            .to_junit_linking(invariants, html.as_deref())
            .context("rendering JUnit XML")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JUnit report: {}", path.display());
    }
    Ok(())
}

/// A rendered JSON report with the key `html` naming its HTML page (which the command writes
/// once the check is done).
pub fn with_html_key(json: &str, page: &str) -> Result<String> {
    let mut value: serde_json::Value =
        serde_json::from_str(json).context("re-reading the JSON report")?;
    if let Some(map) = value.as_object_mut() {
        map.insert("html".into(), page.into());
    }
    Ok(serde_json::to_string_pretty(&value)?)
}

/// `text` safe for a terminal: control characters (escape sequences), bidirectional overrides and
/// backslashes written as escapes, so a label from a log cannot rewrite the screen.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        );
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || bidi {
            let code = u32::from(c);
            if code < 0x100 {
                out.push_str(&format!("\\x{code:02x}"));
            } else {
                out.push_str(&format!("\\u{{{code:04x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_what_a_terminal_would_act_on() {
        assert_eq!(printable("r:1-2:00000000"), "r:1-2:00000000");
        assert_eq!(
            printable("s:x\u{1b}[2J\u{7}\n\\"),
            "s:x\\x1b[2J\\x07\\x0a\\\\"
        );
        assert_eq!(printable("a\u{202e}b\u{9b}é"), "a\\u{202e}b\\x9bé");
    }
}
