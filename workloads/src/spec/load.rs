//! Reading a workload: from a YAML file or text, and to and from the JSON the host hands the
//! guest agent, each with the checks of the whole workload.

use std::path::Path;

use super::diagnostics::{
    clean_yaml_message, display_path, field_line, strip_json_location, SpecDiagnostic, SpecError,
};
use super::input;
use super::Workload;
#[cfg(doc)]
use super::{MAX_NESTING_DEPTH, MAX_SPEC_BYTES, MAX_YAML_NODES};

/// Reads and checks a workload file: a regular file of at most [`MAX_SPEC_BYTES`] bytes. The
/// relative paths of its `guest_files:` are resolved against the file's directory (made
/// absolute, so the `workload.json` of a run names the same files from anywhere).
pub fn load(path: &Path) -> Result<Workload, SpecError> {
    let text = input::read_spec_file(path)?;
    let mut workload = parse(&text, &path.display().to_string())?;
    let dir = path.parent().unwrap_or(Path::new(""));
    for file in &mut workload.guest_files {
        if !file.starts_with('/') {
            let joined = dir.join(&*file);
            let resolved = std::path::absolute(&joined).unwrap_or(joined);
            *file = resolved.to_string_lossy().into_owned();
        }
    }
    Ok(workload)
}

/// Parses and checks workload YAML; `source_name` is used in error messages. Text larger than
/// [`MAX_SPEC_BYTES`], nested deeper than [`MAX_NESTING_DEPTH`] or with more than
/// [`MAX_YAML_NODES`] nodes is refused before it is deserialized.
pub fn parse(text: &str, source_name: &str) -> Result<Workload, SpecError> {
    input::check_shape(text, source_name)?;
    let de = serde_yaml::Deserializer::from_str(text);
    let workload: Workload = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = display_path(e.path());
        let inner = e.into_inner();
        let location = inner.location();
        let message = clean_yaml_message(&inner.to_string(), location.as_ref(), &field);
        let mut line = location.as_ref().map(|l| (l.line(), l.column()));
        // Errors raised by this module's checks carry the position of the enclosing map or
        // sequence; the field path leads to the line of the field itself.
        if let Some(scanned) = field_line(text, &field) {
            if line.is_none_or(|(l, _)| scanned.0 > l) {
                line = Some(scanned);
            }
        }
        SpecError::Invalid(SpecDiagnostic {
            source_name: source_name.to_string(),
            line: line.map(|(l, _)| l),
            column: line.map(|(_, c)| c),
            message,
            field,
        })
    })?;
    workload.check_whole().map_err(|(field, message)| {
        let line = field_line(text, &field);
        SpecError::Invalid(SpecDiagnostic {
            source_name: source_name.to_string(),
            line: line.map(|(l, _)| l),
            column: line.map(|(_, c)| c),
            field,
            message,
        })
    })?;
    Ok(workload)
}

impl Workload {
    /// The workload as one line of JSON (how the host hands it to the guest agent).
    pub fn to_json(&self) -> String {
        // Only strings, integers, booleans and string-keyed maps: serialization cannot fail.
        serde_json::to_string(self).expect("a workload always serializes to JSON")
    }

    /// Reads a workload from [`Workload::to_json`]'s output, with the same checks as YAML.
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        let source_name = "<json>";
        let json_error = |field: String, e: serde_json::Error| {
            SpecError::Invalid(SpecDiagnostic {
                source_name: source_name.to_string(),
                line: Some(e.line()),
                column: Some(e.column()),
                field,
                message: strip_json_location(&e.to_string()),
            })
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let workload: Workload = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = display_path(e.path());
            json_error(field, e.into_inner())
        })?;
        de.end().map_err(|e| json_error(String::new(), e))?;
        workload.check_whole().map_err(|(field, message)| {
            SpecError::Invalid(SpecDiagnostic {
                source_name: source_name.to_string(),
                line: None,
                column: None,
                field,
                message,
            })
        })?;
        Ok(workload)
    }
}
