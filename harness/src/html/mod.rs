//! The HTML report: one self-contained page (inline SVG, style and script; nothing fetched) per
//! check, campaign or mutants run, readable when opened from a CI artifact. See docs/report.md.
//!
//! [`load`] finds what a page is made of and says what is wrong with bad input; `check_page`,
//! `violations`, `svg` and `state` draw a check and its block log; `campaign_page` the
//! campaign and mutants pages.

mod assets;
mod campaign_page;
mod chart;
mod check_page;
mod doc;
pub mod load;
mod model;
mod rows;
mod state;
mod svg;
mod violations;

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

pub use check_page::CheckInputs;

/// The page of a check report.
pub fn check(input: &CheckInputs<'_>) -> String {
    check_page::render(input)
}

/// The page of a campaign report (as `campaign --json` writes it, or a merge of them).
pub fn campaign(report: &Value) -> String {
    campaign_page::campaign(report)
}

/// The page of a `powercut mutants --json` summary.
pub fn mutants(summary: &Value) -> String {
    campaign_page::mutants(summary)
}

/// Writes `html` to `path`, saying where it went.
pub fn write(path: &Path, html: &str) -> Result<()> {
    std::fs::write(path, html).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("HTML report: {}", path.display());
    Ok(())
}
