//! One section per violation: its crash state drawn on the timeline, the finding in words,
//! expected against found, and the commands that rebuild and shrink it.

use std::path::Path;

use powercut_oracles::invariants::Violation;
use serde_json::Value;

use super::check_page::CheckInputs;
use super::doc::{command, esc, facts, table};
use super::model::Timeline;
use super::state::{lost_records, StateView};
use super::svg::{self, View};
use powercut_oracles::blocklog::BlockLog;

/// Violations drawn one by one; the rest are listed in a table.
const DRAWN: usize = 20;
/// Entries shown before the durable prefix and after the cut in a violation's picture.
const CONTEXT_BEFORE: u64 = 30;
const CONTEXT_AFTER: u64 = 15;

/// The violations section (a line saying there is none when there is none).
pub fn section(input: &CheckInputs<'_>, timeline: Option<&Timeline>) -> String {
    let all: Vec<&Violation> = input.report.all_violations().collect();
    if all.is_empty() {
        return super::doc::section(
            "violations",
            "Violations",
            "<p>None: every invariant held in every crash state checked.</p>",
        );
    }
    let second_timeline = input.second.map(|s| Timeline::of(s.log));
    let mut inner = String::new();
    for (k, v) in all.iter().enumerate().take(DRAWN) {
        let recording = Recording::of_state(input, timeline, second_timeline.as_ref(), v);
        inner.push_str(&one(input, &recording, k, v));
    }
    if all.len() > DRAWN {
        let rows: Vec<Vec<String>> = all[DRAWN..]
            .iter()
            .map(|v| {
                vec![
                    esc(&v.invariant),
                    format!("<code>{}</code>", esc(&v.state_id)),
                    esc(&v.expected),
                    esc(&v.found),
                ]
            })
            .collect();
        inner.push_str(&format!("<h3>{} more</h3>\n", all.len() - DRAWN));
        inner.push_str(&table(
            "more-violations",
            &["invariant", "state", "expected", "found"],
            &rows,
            |_| "bad",
        ));
    }
    super::doc::section("violations", &format!("Violations ({})", all.len()), &inner)
}

/// The cut of a state id of this log, if it is one.
pub fn cut_of(state_id: &str, timeline: &Timeline) -> Option<u64> {
    let id: powercut_oracles::crash::StateId = state_id.parse().ok()?;
    (format!("{:08x}", id.log_hash) == timeline.log_hash).then_some(id.cut)
}

/// The recording a violation's state belongs to: the first run's, or that of the run after a
/// power cut.
struct Recording<'a> {
    log: Option<&'a BlockLog>,
    timeline: Option<&'a Timeline>,
    dir: Option<&'a Path>,
}

impl<'a> Recording<'a> {
    fn of_state(
        input: &CheckInputs<'a>,
        first: Option<&'a Timeline>,
        second: Option<&'a Timeline>,
        v: &Violation,
    ) -> Recording<'a> {
        match (input.second, second) {
            (Some(rec), Some(t)) if cut_of(&v.state_id, t).is_some() => Recording {
                log: Some(rec.log),
                timeline: Some(t),
                dir: Some(rec.dir),
            },
            _ => Recording {
                log: input.log,
                timeline: first,
                dir: input.dir,
            },
        }
    }
}

fn one(input: &CheckInputs<'_>, recording: &Recording<'_>, k: usize, v: &Violation) -> String {
    let timeline = recording.timeline;
    let state = match (recording.log, timeline) {
        (Some(log), Some(_)) => StateView::resolve(log, &v.state_id),
        _ => Err("the block log was not at hand".to_string()),
    };
    let mut s = format!(
        "<div class=\"violation\" id=\"violation-{}\" data-invariant=\"{}\" data-state=\"{}\">\n\
         <h3>{}. {} on <code>{}</code></h3>\n",
        k + 1,
        esc(&v.invariant),
        esc(&v.state_id),
        k + 1,
        esc(&v.invariant),
        esc(&v.state_id)
    );
    s.push_str(&finding(timeline, state.as_ref(), v));
    let mut rows = vec![
        ("expected".to_string(), esc(&v.expected)),
        ("found".to_string(), esc(&v.found)),
    ];
    if let Some(step) = &v.step {
        rows.push(("step (last ack before it)".into(), esc(step)));
    }
    s.push_str(&facts(&format!("violation-{}-facts", k + 1), &rows));
    if let (Ok(st), Some(t)) = (&state, timeline) {
        s.push_str(&picture(t, st, k));
    }
    s.push_str("<h4>Reproduce</h4>\n");
    for c in commands(input, recording.dir, v) {
        s.push_str(&command(&c));
    }
    s.push_str("</div>\n");
    s
}

/// The finding in words: the state, then each acknowledged record it loses and why.
fn finding(
    timeline: Option<&Timeline>,
    state: Result<&StateView, &String>,
    v: &Violation,
) -> String {
    let mut s = String::from("<div class=\"finding\">\n");
    match (state, timeline) {
        (Ok(st), Some(t)) => {
            s.push_str(&format!("<p>{}.</p>\n", esc(&st.describe())));
            let lost = lost_records(t, st, 5);
            for line in &lost {
                s.push_str(&format!("<p class=\"lost\">{}.</p>\n", esc(line)));
            }
            if lost.is_empty() {
                s.push_str(&format!(
                    "<p>{} is violated here: expected {}; found {}.</p>\n",
                    esc(&v.invariant),
                    esc(&v.expected),
                    esc(&v.found)
                ));
            }
        }
        (Err(_), _) | (Ok(_), None) => {
            let why = state.err().map_or("no timeline", String::as_str);
            s.push_str(&format!(
                "<p>{} is violated: expected {}; found {}. (Not drawn: {}.)</p>\n",
                esc(&v.invariant),
                esc(&v.expected),
                esc(&v.found),
                esc(why)
            ));
        }
    }
    s.push_str("</div>\n");
    s
}

/// The state on the timeline: from a little before its durable prefix to a little after its
/// cut, entry by entry when that fits.
fn picture(t: &Timeline, st: &StateView, k: usize) -> String {
    let to = (st.cut + CONTEXT_AFTER).min(t.len());
    let from = st
        .prefix_len
        .saturating_sub(CONTEXT_BEFORE)
        .max(to.saturating_sub(svg::MAX_COLUMNS));
    let id = format!("violation-{}-svg", k + 1);
    let view = View {
        id: &id,
        from,
        to,
        state: Some(st),
        markers: &[],
    };
    format!("<div class=\"scroll\">{}</div>\n", svg::render(t, &view))
}

/// `powercut repro` of the state (from `state_dir`, the recording of its log) and `powercut
/// shrink` of the workload.
fn commands(input: &CheckInputs<'_>, state_dir: Option<&Path>, v: &Violation) -> Vec<String> {
    let dir = input
        .dir
        .map_or_else(|| "RECORDING".to_string(), shell_word);
    let join_in = |root: Option<&Path>, name: &str| {
        root.map_or_else(
            || format!("RECORDING/{name}"),
            |d| shell_word(&d.join(name)),
        )
    };
    let join = |name: &str| join_in(input.dir, name);
    let mut out = Vec::new();
    if v.state_id
        .parse::<powercut_oracles::crash::StateId>()
        .is_ok()
    {
        out.push(format!(
            "powercut repro {} --log {} --base {}",
            v.state_id,
            join_in(state_dir, "log.bin"),
            join_in(state_dir, "base.img")
        ));
    }
    let mutant = input
        .workload
        .and_then(|w| w.pointer("/writer/mutant"))
        .and_then(Value::as_str)
        .map(|m| format!(" --mutant {m}"))
        .unwrap_or_default();
    out.push(format!(
        "powercut shrink {}{mutant} --budget 20s --out {dir}/shrink",
        join("workload.json")
    ));
    out
}

/// A path as one shell word (quoted when it holds anything but plain characters).
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
