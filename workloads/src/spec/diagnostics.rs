//! Errors of loading a workload, and where in the text they are: the field path serde reports,
//! the line and column of that field found by a light scan of the text, messages cleaned of
//! the positions the diagnostic shows apart.

use std::fmt;
use std::path::PathBuf;

use super::InputError;

/// Where and why a workload is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecDiagnostic {
    /// The file name (or `<json>`, or whatever the caller passed to [`parse`](crate::spec::parse)).
    pub source_name: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Field path such as `steps[3].append.count`; empty for the document itself.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SpecDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source_name)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Errors of loading a workload.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("read workload file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error of the operating system.
        #[source]
        source: std::io::Error,
    },
    /// The file or text is refused before it is parsed: not a regular file, too large, too
    /// deeply nested or too many nodes.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The text is not a valid workload.
    #[error("{0}")]
    Invalid(SpecDiagnostic),
}

impl SpecError {
    /// The diagnostic, for an invalid workload (not for input refused by its size or shape).
    pub fn diagnostic(&self) -> Option<&SpecDiagnostic> {
        match self {
            SpecError::Invalid(d) => Some(d),
            SpecError::Read { .. } | SpecError::Input(_) => None,
        }
    }
}

/// The field path of a serde error as the diagnostic shows it; empty for the document itself.
pub(super) fn display_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    // `?` marks a position the parser never identified (syntax errors): drop it.
    let known = match text.find('?') {
        Some(i) => text[..i].trim_end_matches('.'),
        None => &text,
    };
    if known == "." {
        String::new()
    } else {
        known.to_string()
    }
}

/// serde_yaml's message carries its own (shorter) path prefix and an ` at line L column C`
/// suffix; the diagnostic shows both separately.
pub(super) fn clean_yaml_message(
    message: &str,
    location: Option<&serde_yaml::Location>,
    field: &str,
) -> String {
    let mut message = match location {
        Some(l) => message.replacen(
            &format!(" at line {} column {}", l.line(), l.column()),
            "",
            1,
        ),
        None => message.to_string(),
    };
    if let Some((prefix, rest)) = message.split_once(": ") {
        let is_path = !prefix.is_empty()
            && !prefix.contains(' ')
            && (field == prefix
                || field.starts_with(&format!("{prefix}."))
                || field.starts_with(&format!("{prefix}[")));
        if is_path {
            message = rest.to_string();
        }
    }
    message
}

/// serde_json's message without its ` at line L column C` suffix (the diagnostic shows it).
pub(super) fn strip_json_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Line and column of a field path such as `disk_mib`, `writer.max_staging_bytes`,
/// `power_cut.at_ack` or `steps[2].append.size`, by a light scan of block-style YAML. `None`
/// when the layout is not the plain one (flow style, anchors): the field path still says where.
pub(super) fn field_line(text: &str, field: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut parts = field.split('.');
    let first = parts.next()?;
    let (top_key, index) = match first.split_once('[') {
        Some((key, rest)) => (key, rest.strip_suffix(']')?.parse::<usize>().ok()),
        None => (first, None),
    };
    let top = lines.iter().position(|l| key_of(l) == Some((0, top_key)))?;
    let block_end = (top + 1..lines.len())
        .find(|&i| matches!(key_of(lines[i]), Some((0, _))))
        .unwrap_or(lines.len());
    let mut found = (top, 0usize);
    if let Some(index) = index {
        let items: Vec<usize> = (top + 1..block_end)
            .filter(|&i| lines[i].trim_start().starts_with('-'))
            .collect();
        let item_indent = items.first().map(|&i| indent(lines[i]))?;
        let items: Vec<usize> = items
            .into_iter()
            .filter(|&i| indent(lines[i]) == item_indent)
            .collect();
        let item = *items.get(index)?;
        found = (item, item_indent);
        let item_end = items
            .iter()
            .copied()
            .find(|&i| i > item)
            .unwrap_or(block_end);
        // Deeper keys of the item (`append.size`): the last component, searched in the item.
        if let Some(last) = field
            .rsplit('.')
            .next()
            .filter(|_| field.matches('.').count() >= 2)
        {
            if let Some(i) = (item..item_end).find(|&i| contains_key(lines[i], last)) {
                found = (i, lines[i].find(last).unwrap_or(0));
            }
        }
    } else if let Some(sub) = parts.next() {
        if let Some(i) = (top..block_end).find(|&i| contains_key(lines[i], sub)) {
            found = (i, lines[i].find(sub).unwrap_or(0));
        }
    }
    Some((found.0 + 1, found.1 + 1))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// `(indent, key)` of a block mapping line `key: ...`.
fn key_of(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with('-') {
        return None;
    }
    let (key, _) = trimmed.split_once(':')?;
    (!key.is_empty() && !key.contains(' ')).then_some((indent(line), key))
}

fn contains_key(line: &str, key: &str) -> bool {
    line.match_indices(key).any(|(i, _)| {
        let before_ok = i == 0 || matches!(line.as_bytes()[i - 1], b' ' | b'{' | b',' | b'-');
        line[i + key.len()..].starts_with(':') && before_ok
    })
}
