//! Bounds on workload input, enforced before serde_yaml sees it.
//!
//! serde_yaml (through libyaml) collects every event of a document before deserializing, costs
//! tens of bytes per input byte, and libyaml's scanner walks its whole stack of flow levels for
//! every token, so a deeply nested file is quadratic. A workload file is therefore read only from
//! a regular file, at most [`MAX_SPEC_BYTES`], and one streaming pass over libyaml's events
//! (the same parser serde_yaml uses, so both see the same structure) refuses nesting deeper than
//! [`MAX_NESTING_DEPTH`] and more than [`MAX_YAML_NODES`] nodes, aliases counted as the nodes
//! they repeat, as soon as the limit is crossed. The pass keeps only the open collections and
//! the anchors, so it is linear in the input and small in memory.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::spec::SpecError;
use crate::sys::yaml::{Event, EventParser, Position};

/// Largest workload file or text, in bytes. The bundled workloads are a few KiB; this bounds
/// serde_yaml's memory (tens of bytes per input byte) to tens of MiB.
pub const MAX_SPEC_BYTES: usize = 1024 * 1024;
/// Deepest nesting of sequences and mappings (the bundled workloads use 4).
pub const MAX_NESTING_DEPTH: usize = 32;
/// Most YAML nodes (scalars, sequences, mappings) in the input, each alias counted as the
/// nodes it repeats. A workload of `MAX_STEPS` steps needs well under this.
pub const MAX_YAML_NODES: u64 = 500_000;

/// Input refused before it is parsed as a workload.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The path names a FIFO, device, socket or directory.
    #[error(
        "{}: not a regular file but a {kind}; a workload is read only from a regular file",
        path.display()
    )]
    NotRegularFile {
        /// The path given.
        path: PathBuf,
        /// What it is instead (`FIFO`, `character device`, `directory`, ...).
        kind: &'static str,
    },
    /// More than [`MAX_SPEC_BYTES`] bytes.
    #[error("{source_name}: larger than {limit} bytes, the most a workload may hold")]
    TooLarge {
        /// The file name (or whatever the caller passed to `spec::parse`).
        source_name: String,
        /// [`MAX_SPEC_BYTES`].
        limit: usize,
    },
    /// Sequences and mappings nested deeper than [`MAX_NESTING_DEPTH`].
    #[error(
        "{source_name}:{line}:{column}: nested deeper than {limit} levels \
         (an alias counts as the node it repeats)"
    )]
    TooDeep {
        /// The file name.
        source_name: String,
        /// 1-based line of the node that goes past the limit.
        line: usize,
        /// 1-based column of that node.
        column: usize,
        /// [`MAX_NESTING_DEPTH`].
        limit: usize,
    },
    /// More than [`MAX_YAML_NODES`] nodes.
    #[error(
        "{source_name}:{line}:{column}: more than {limit} YAML nodes \
         (an alias counts as the nodes it repeats)"
    )]
    TooManyNodes {
        /// The file name.
        source_name: String,
        /// 1-based line of the node that goes past the limit.
        line: usize,
        /// 1-based column of that node.
        column: usize,
        /// [`MAX_YAML_NODES`].
        limit: u64,
    },
    /// An alias inside the node its anchor names: an endless structure.
    #[error("{source_name}:{line}:{column}: alias *{anchor} refers to a node that contains it")]
    RecursiveAlias {
        /// The file name.
        source_name: String,
        /// 1-based line of the alias.
        line: usize,
        /// 1-based column of the alias.
        column: usize,
        /// The anchor's name.
        anchor: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Reads a workload file: only a regular file, at most [`MAX_SPEC_BYTES`] bytes, UTF-8.
pub(crate) fn read_spec_file(path: &Path) -> Result<String, SpecError> {
    let io_error = |source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    };
    // stat before open: opening a FIFO for reading blocks until a writer appears.
    let metadata = std::fs::metadata(path).map_err(io_error)?;
    refuse_special(path, &metadata)?;
    // O_NONBLOCK too, in case the path is swapped for a FIFO between the stat and the open;
    // it changes nothing for a regular file.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_error)?;
    refuse_special(path, &file.metadata().map_err(io_error)?)?;
    let bytes = read_bounded(file).map_err(io_error)?;
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(InputError::TooLarge {
            source_name: path.display().to_string(),
            limit: MAX_SPEC_BYTES,
        }
        .into());
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        io_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text: invalid byte on line {line}"),
        ))
    })
}

/// At most `MAX_SPEC_BYTES + 1` bytes: one more than the limit shows the file is too large
/// without reading the rest of it.
fn read_bounded(file: File) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn refuse_special(path: &Path, metadata: &std::fs::Metadata) -> Result<(), InputError> {
    let file_type = metadata.file_type();
    let kind = if file_type.is_file() {
        return Ok(());
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_socket() {
        "socket"
    } else {
        "special file"
    };
    Err(InputError::NotRegularFile {
        path: path.to_path_buf(),
        kind,
    })
}

// ---------------------------------------------------------------------------------------------
// The shape pass

/// Refuses input larger than [`MAX_SPEC_BYTES`], nested deeper than [`MAX_NESTING_DEPTH`] or
/// with more than [`MAX_YAML_NODES`] nodes. Syntax errors are left to serde_yaml, which stops at
/// the same place and reports them with the rest of its diagnostics.
pub(crate) fn check_shape(text: &str, source_name: &str) -> Result<(), InputError> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(InputError::TooLarge {
            source_name: source_name.to_string(),
            limit: MAX_SPEC_BYTES,
        });
    }
    let mut shape = Shape::default();
    let mut parser = EventParser::new(text.as_bytes());
    while let Some((event, at)) = parser.next() {
        let refuse = |why: Refusal| why.into_error(source_name, at);
        match event {
            Event::StreamEnd => break,
            // serde_yaml resolves aliases within one document.
            Event::DocumentStart => shape.anchors.clear(),
            Event::Scalar(anchor) => {
                shape.add_nodes(1, 0).map_err(refuse)?;
                if let Some(anchor) = anchor {
                    shape.anchors.insert(
                        anchor,
                        Anchored::Done {
                            nodes: 1,
                            height: 0,
                        },
                    );
                }
            }
            Event::CollectionStart(anchor) => shape.open(anchor).map_err(refuse)?,
            Event::CollectionEnd => shape.close(),
            Event::Alias(anchor) => shape.alias(anchor).map_err(refuse)?,
            Event::Other => {}
        }
    }
    Ok(())
}

/// Counts of the pass so far.
#[derive(Default)]
struct Shape {
    /// Nodes so far, aliases expanded.
    nodes: u64,
    /// Open collections, outermost first; the depth is their number.
    open: Vec<Open>,
    /// Anchors of the current document by name.
    anchors: HashMap<Vec<u8>, Anchored>,
    /// Distinguishes an anchor from a later one of the same name.
    next_id: u64,
}

struct Open {
    /// Anchor name and id, when the collection has one.
    anchor: Option<(Vec<u8>, u64)>,
    /// `Shape::nodes` before this collection.
    nodes_before: u64,
    /// Deepest depth reached inside it, aliases expanded.
    deepest: usize,
}

enum Anchored {
    /// Started but not ended: an alias to it would be inside it.
    Open { id: u64 },
    /// A complete node: how many nodes an alias to it repeats, and how deep they nest below it.
    Done { nodes: u64, height: usize },
}

enum Refusal {
    TooDeep,
    TooManyNodes,
    RecursiveAlias(Vec<u8>),
}

impl Refusal {
    fn into_error(self, source_name: &str, at: Position) -> InputError {
        let source_name = source_name.to_string();
        let (line, column) = (at.line, at.column);
        match self {
            Refusal::TooDeep => InputError::TooDeep {
                source_name,
                line,
                column,
                limit: MAX_NESTING_DEPTH,
            },
            Refusal::TooManyNodes => InputError::TooManyNodes {
                source_name,
                line,
                column,
                limit: MAX_YAML_NODES,
            },
            Refusal::RecursiveAlias(anchor) => InputError::RecursiveAlias {
                source_name,
                line,
                column,
                anchor: String::from_utf8_lossy(&anchor).into_owned(),
            },
        }
    }
}

impl Shape {
    /// Adds `nodes` nodes that nest `height` levels below the current depth.
    fn add_nodes(&mut self, nodes: u64, height: usize) -> Result<(), Refusal> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_YAML_NODES {
            return Err(Refusal::TooManyNodes);
        }
        let depth = self.open.len().saturating_add(height);
        if depth > MAX_NESTING_DEPTH {
            return Err(Refusal::TooDeep);
        }
        if let Some(parent) = self.open.last_mut() {
            parent.deepest = parent.deepest.max(depth);
        }
        Ok(())
    }

    fn open(&mut self, anchor: Option<Vec<u8>>) -> Result<(), Refusal> {
        let nodes_before = self.nodes;
        self.add_nodes(1, 1)?;
        let anchor = anchor.map(|name| {
            self.next_id += 1;
            let id = self.next_id;
            self.anchors.insert(name.clone(), Anchored::Open { id });
            (name, id)
        });
        self.open.push(Open {
            anchor,
            nodes_before,
            deepest: self.open.len() + 1,
        });
        Ok(())
    }

    fn close(&mut self) {
        let depth = self.open.len();
        let Some(closed) = self.open.pop() else {
            return;
        };
        if let Some(parent) = self.open.last_mut() {
            parent.deepest = parent.deepest.max(closed.deepest);
        }
        if let Some((name, id)) = closed.anchor {
            // A later anchor of the same name inside this node replaced it, as in serde_yaml.
            if let Some(entry) = self.anchors.get_mut(&name) {
                if matches!(entry, Anchored::Open { id: open } if *open == id) {
                    *entry = Anchored::Done {
                        nodes: self.nodes - closed.nodes_before,
                        height: closed.deepest + 1 - depth,
                    };
                }
            }
        }
    }

    fn alias(&mut self, name: Vec<u8>) -> Result<(), Refusal> {
        match self.anchors.get(&name) {
            Some(&Anchored::Done { nodes, height }) => self.add_nodes(nodes, height),
            Some(Anchored::Open { .. }) => Err(Refusal::RecursiveAlias(name)),
            // serde_yaml reports the unknown anchor.
            None => self.add_nodes(1, 0),
        }
    }
}
