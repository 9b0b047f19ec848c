//! The page of one check (`run`, `check`): the summary, the timeline of the block log and one
//! section per violation.

use std::collections::BTreeMap;
use std::path::Path;

use powercut_oracles::blocklog::BlockLog;
use powercut_oracles::report::Report;
use serde_json::Value;

use super::doc::{badge, esc, facts, json_for_script, page, section, table};
use super::model::{mark_words, Kind, Timeline};
use super::svg::{self, View};
use super::violations;

/// What a check page is made of: the report, and what the recording holds when it is at hand.
#[derive(Debug)]
pub struct CheckInputs<'a> {
    pub report: &'a Report,
    pub log: Option<&'a BlockLog>,
    /// `workload.json` of the recording.
    pub workload: Option<&'a Value>,
    /// `record.json` of the recording.
    pub record: Option<&'a Value>,
    /// The recording directory, for the commands shown.
    pub dir: Option<&'a Path>,
    /// Why there is no timeline, when there is none.
    pub no_log: Option<String>,
    /// The recording of the run after a power cut (`after-crash/`), when there is one: the
    /// states of its log are drawn on it and rebuilt from it.
    pub second: Option<SecondRecording<'a>>,
}

/// The recording of the run after a power cut, beside the first.
#[derive(Debug, Clone, Copy)]
pub struct SecondRecording<'a> {
    /// Its block log.
    pub log: &'a BlockLog,
    /// Its directory.
    pub dir: &'a Path,
}

impl CheckInputs<'_> {
    /// The invariants a report of this recording answers for: a program's checker's or the
    /// engine's, and I8 when the run had a second crash.
    fn invariants(&self) -> Vec<&'static str> {
        let program = self
            .workload
            .and_then(|w| powercut_workloads::spec::Workload::from_json(&w.to_string()).ok())
            .is_some_and(|w| w.is_program());
        crate::two_crash::invariants(program, self.second.is_some())
    }
}

/// The whole page.
pub fn render(input: &CheckInputs<'_>) -> String {
    let r = input.report;
    let timeline = input.log.map(Timeline::of);
    let mut body = summary(input, timeline.as_ref());
    body.push_str(&timeline_section(input, timeline.as_ref()));
    body.push_str(&violations::section(input, timeline.as_ref()));
    let verdict = if r.all_violations().next().is_some() {
        "violations found"
    } else if r.not_covered().is_some() {
        "incomplete"
    } else {
        "all invariants held"
    };
    page(
        &format!(
            "powercut: {} seed {} on {}: {verdict}",
            r.workload, r.seed, r.fs
        ),
        &body,
    )
}

fn summary(input: &CheckInputs<'_>, timeline: Option<&Timeline>) -> String {
    let r = input.report;
    let mut rows = vec![
        ("workload".to_string(), esc(&r.workload)),
        ("seed".to_string(), r.seed.to_string()),
        ("file system".to_string(), esc(&r.fs)),
        (
            "kernel".to_string(),
            esc(str_at(input.record, "/kernel_package").unwrap_or("not recorded")),
        ),
        ("engine options".to_string(), engine_options(input.workload)),
        ("log".to_string(), log_facts(r, timeline)),
        ("states".to_string(), states_facts(r)),
        (
            "states/s".to_string(),
            format!("{:.1} over {:.1} s", r.states_per_second, r.elapsed_seconds),
        ),
        ("budget".to_string(), budget_facts(r)),
        ("coverage".to_string(), coverage_facts(r)),
    ];
    if let Some(shard) = &r.shard {
        rows.push(("shard".into(), esc(shard)));
    }
    if let Some(m) = &r.minimal_repro {
        rows.push(("minimal reproducer".into(), esc(&m.describe())));
    }
    if !r.phases.is_empty() {
        rows.push(("phases".into(), phases_facts(r)));
    }
    if let Some(split) = &r.time_split {
        let text = split.describe();
        let text = text.strip_prefix("time per state ").unwrap_or(&text);
        rows.push(("time per state".into(), esc(text)));
    }
    let mut inner = facts("summary-facts", &rows);
    inner.push_str("<h3>Invariants</h3>\n");
    inner.push_str(&invariants_table(r, &input.invariants()));
    inner.push_str("<h3>Faults</h3>\n");
    inner.push_str(&faults_table(input));
    section("summary", "Summary", &inner)
}

fn str_at<'a>(value: Option<&'a Value>, pointer: &str) -> Option<&'a str> {
    value
        .and_then(|v| v.pointer(pointer))
        .and_then(Value::as_str)
}

fn engine_options(workload: Option<&Value>) -> String {
    let Some(writer) = workload
        .and_then(|w| w.get("writer"))
        .and_then(Value::as_object)
    else {
        return "not recorded (no workload.json)".into();
    };
    if writer.is_empty() {
        return "the engine's defaults".into();
    }
    let parts: Vec<String> = writer
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
        .collect();
    esc(&parts.join(", "))
}

fn log_facts(r: &Report, timeline: Option<&Timeline>) -> String {
    match timeline {
        Some(t) => {
            let count = |k: Kind| t.items.iter().filter(|i| i.kind == k).count();
            format!(
                "{} ({} entries: {} writes, {} discards, {} flush entries, {} FUA, {} marks; {} \
                 epochs)",
                esc(&t.log_hash),
                t.len(),
                count(Kind::Write),
                count(Kind::Discard),
                t.items.iter().filter(|i| i.flush).count(),
                t.items.iter().filter(|i| i.fua).count(),
                count(Kind::Mark),
                t.epochs.len()
            )
        }
        None => format!("{} (the log itself was not at hand)", esc(&r.log_hash)),
    }
}

fn states_facts(r: &Report) -> String {
    let kinds: Vec<String> = r
        .states_by_kind
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    format!(
        "{} of {} checked ({}); {} duplicates skipped, {} equal to coverage states",
        r.states_checked,
        r.states_total,
        esc(&kinds.join(", ")),
        r.duplicates_skipped,
        r.states_from_coverage
    )
}

fn budget_facts(r: &Report) -> String {
    match r.not_covered() {
        None if r.budget_exhausted => "ran out after the last state was taken".into(),
        None => "every state was checked".into(),
        Some(what) => format!("{} {}", badge(false, "incomplete"), esc(&what)),
    }
}

fn coverage_facts(r: &Report) -> String {
    match &r.coverage {
        None => "not run in this shard".into(),
        Some(c) => {
            let mut s = format!(
                "{} acks covered, {} uncovered, {} not checked",
                c.acks_covered, c.acks_uncovered, c.acks_unchecked
            );
            if !c.uncovered.is_empty() {
                s.push_str(&format!(" (uncovered: {})", c.uncovered.join(", ")));
            }
            esc(&s)
        }
    }
}

/// What each phase of the command covered and how long it took, one per line.
fn phases_facts(r: &Report) -> String {
    let lines: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} in {:.1} s", esc(&p.describe()), p.seconds))
        .collect();
    lines.join("<br>\n")
}

/// One row per invariant (`invariants`, and any other that was violated): held, or how many
/// violations.
fn invariants_table(r: &Report, invariants: &[&str]) -> String {
    let mut counts: BTreeMap<String, usize> =
        invariants.iter().map(|i| (i.to_string(), 0)).collect();
    for v in r.all_violations() {
        *counts.entry(v.invariant.clone()).or_insert(0) += 1;
    }
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|(inv, n)| {
            let verdict = if *n == 0 {
                badge(true, "held")
            } else {
                badge(false, &format!("violated ({n})"))
            };
            vec![format!("<span class=\"inv\">{}</span>", esc(inv)), verdict]
        })
        .collect();
    let bad: Vec<bool> = counts.values().map(|n| *n > 0).collect();
    table("invariants", &["invariant", "verdict"], &rows, |i| {
        if bad[i] {
            "bad"
        } else {
            "ok"
        }
    })
}

/// Fault steps and a power cut of the workload, and whether the recording shows they fired.
fn faults_table(input: &CheckInputs<'_>) -> String {
    let Some(w) = input.workload else {
        return "<p>Not known: the recording's workload.json was not at hand.</p>\n".into();
    };
    let steps = w.get("steps").and_then(Value::as_array);
    let mut rows = Vec::new();
    for (i, step) in steps.into_iter().flatten().enumerate() {
        if let Some(fault) = step.get("fault") {
            rows.push(vec![
                format!("step {}", i + 1),
                esc(&format!("fault {fault}")),
                fault_fired(input.record),
            ]);
        }
    }
    if let Some(cut) = w.get("power_cut").filter(|c| !c.is_null()) {
        let fired = match str_at(input.record, "/end") {
            Some("killed") => power_cut_fired(input.record).to_string(),
            Some(_) => "no: the run ended cleanly".to_string(),
            None => "not recorded".to_string(),
        };
        rows.push(vec!["power cut".into(), esc(&cut.to_string()), esc(&fired)]);
    }
    if rows.is_empty() {
        return "<p id=\"faults\">No fault armed: the crash states are the only faults.</p>\n"
            .into();
    }
    table("faults", &["where", "fault", "fired"], &rows, |_| "ok")
}

/// How the backend that recorded cut the power. Recordings older than `record.json`'s
/// `backend` key tell the dm backend by its `image_key`.
fn power_cut_fired(record: Option<&Value>) -> &'static str {
    let dm = match str_at(record, "/backend") {
        Some(backend) => backend == "dm",
        None => str_at(record, "/image_key") == Some("dm-backend"),
    };
    if dm {
        "yes: from the chosen ack on, the fault layer failed every write and flush (dm backend)"
    } else {
        "yes: QEMU killed after the chosen ack"
    }
}

fn fault_fired(record: Option<&Value>) -> String {
    let Some(summary) = record.and_then(|r| r.pointer("/done/summary")) else {
        return "not recorded".into();
    };
    let failed = summary
        .get("records_failed")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let refused = summary
        .get("poisoned_refusals")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if failed + refused > 0 {
        esc(&format!(
            "yes: {failed} records failed, {refused} calls refused by the poisoned journal"
        ))
    } else {
        "no failed record or refused call recorded".into()
    }
}

fn timeline_section(input: &CheckInputs<'_>, timeline: Option<&Timeline>) -> String {
    let Some(t) = timeline else {
        let why = input.no_log.as_deref().unwrap_or("no block log");
        return section(
            "timeline",
            "Block log",
            &format!("<p>No timeline: {}</p>", esc(why)),
        );
    };
    let markers = overview_markers(input, t);
    let view = View {
        id: "overview",
        from: 0,
        to: t.len(),
        state: None,
        markers: &markers,
    };
    let mut inner = String::from(LEGEND);
    if t.len() > svg::MAX_COLUMNS {
        inner.push_str(&format!(
            "<p>{} entries drawn in {} columns: a mark stands for the writes of its column, \
             darker for more. Click the picture, or use the controls, for entry-by-entry \
             detail.</p>\n",
            t.len(),
            svg::MAX_COLUMNS
        ));
    }
    inner.push_str("<div class=\"scroll\">");
    inner.push_str(&svg::render(t, &view));
    inner.push_str("</div>\n");
    inner.push_str(CONTROLS);
    inner.push_str(&format!(
        "<script type=\"application/json\" id=\"log-data\">{}</script>\n",
        json_for_script(&log_data(t))
    ));
    section("timeline", "Block log", &inner)
}

const LEGEND: &str = "<p class=\"legend\"><span><i style=\"background:#2f6fb0\"></i>write</span>\
<span><i style=\"background:#c26d00\"></i>FUA write (dashed line)</span>\
<span><i style=\"background:#1a7f37\"></i>FLUSH (line)</span>\
<span><i style=\"background:#6639ba\"></i>ack mark</span>\
<span><i style=\"background:#e9edf1\"></i>epoch (between flushes)</span>\
<span><i style=\"border:1.5px dashed #d1242f\"></i>dropped in the state</span>\
<span><i style=\"background:#e8a33b\"></i>torn</span>\
<span><i style=\"background:#c2c7cc\"></i>after the cut</span>\
<span><i style=\"background:#d1242f\"></i>power cut / violation</span></p>\n";

const CONTROLS: &str = "<h3>Detail</h3>\n<div class=\"controls\">entries \
<input id=\"detail-from\" type=\"number\" min=\"0\" value=\"0\"> to \
<input id=\"detail-to\" type=\"number\" min=\"1\" value=\"200\"> \
<button type=\"button\" id=\"detail-show\">show</button> \
<button type=\"button\" id=\"zoom-in\">zoom in</button> \
<button type=\"button\" id=\"zoom-out\">zoom out</button> epoch \
<input id=\"detail-epoch\" type=\"number\" min=\"0\" value=\"0\"> \
<button type=\"button\" id=\"detail-epoch-show\">show epoch</button></div>\n\
<div class=\"scroll\" id=\"detail\"><p>The detail view needs the page's script.</p></div>\n";

/// Violations' cuts and a live power cut, marked on the overview.
fn overview_markers(input: &CheckInputs<'_>, t: &Timeline) -> Vec<(u64, &'static str, String)> {
    let mut out = Vec::new();
    for (k, v) in input.report.all_violations().enumerate().take(20) {
        if let Some(cut) = violations::cut_of(&v.state_id, t) {
            out.push((
                cut,
                "violation-at",
                format!("violation {}: {}", k + 1, v.invariant),
            ));
        }
    }
    if str_at(input.record, "/end") == Some("killed") {
        if let Some(label) = input
            .record
            .and_then(|r| r.get("killed_after_ack"))
            .and_then(Value::as_u64)
            .and_then(|ack| killed_mark(t, ack))
        {
            out.push((label, "power-cut", "power cut of the live run".into()));
        }
    }
    out
}

/// The entry after the `ack`-th durability mark (1-based), where the live run was killed.
fn killed_mark(t: &Timeline, ack: u64) -> Option<u64> {
    t.items
        .iter()
        .filter(|i| i.kind == Kind::Mark)
        .filter(|i| {
            i.label
                .as_deref()
                .is_some_and(|l| !l.starts_with("s:") && !l.starts_with("e:"))
        })
        .nth(ack.checked_sub(1)? as usize)
        .map(|i| i.index + 1)
}

/// The data the detail view redraws from: rows, entries as `[kind, row, fua, flush, sector,
/// sectors]`, mark labels in words, epochs.
fn log_data(t: &Timeline) -> Value {
    let entries: Vec<Value> = t
        .items
        .iter()
        .map(|i| {
            let kind = match i.kind {
                Kind::Write => 0,
                Kind::Discard => 1,
                Kind::Flush => 2,
                Kind::Mark => 3,
            };
            serde_json::json!([
                kind,
                i.row.map_or(-1, |r| r as i64),
                u8::from(i.fua),
                u8::from(i.flush),
                i.sector,
                i.nr_sectors
            ])
        })
        .collect();
    let marks: serde_json::Map<String, Value> = t
        .items
        .iter()
        .filter_map(|i| {
            Some((
                i.index.to_string(),
                Value::from(mark_words(i.label.as_deref()?)),
            ))
        })
        .collect();
    serde_json::json!({
        "rows": t.rows,
        "entries": entries,
        "marks": marks,
        "epochs": t.epochs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_cut_wording_follows_the_backend_that_recorded() {
        let qemu = serde_json::json!({ "backend": "qemu", "image_key": "0123abcd" });
        let dm = serde_json::json!({ "backend": "dm", "image_key": "dm-backend" });
        let old_dm = serde_json::json!({ "image_key": "dm-backend" });
        let old_qemu = serde_json::json!({ "image_key": "0123abcd" });
        for record in [Some(&qemu), Some(&old_qemu), None] {
            assert_eq!(
                power_cut_fired(record),
                "yes: QEMU killed after the chosen ack"
            );
        }
        for record in [&dm, &old_dm] {
            let fired = power_cut_fired(Some(record));
            assert!(
                fired.contains("fault layer") && !fired.contains("QEMU"),
                "{fired}"
            );
        }
    }
}
