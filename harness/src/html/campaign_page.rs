//! The pages of a campaign (or a merge of campaigns) and of `powercut mutants`: the summary,
//! the findings table, and a chart of crash states checked over time.

use serde_json::Value;

use super::chart;
use super::doc::{badge, command, esc, facts, page, section, table};

/// A campaign report (`campaign --json`, `DIR/campaign.json`, or a merged one).
pub fn campaign(report: &Value) -> String {
    let get = |k: &str| report.get(k).filter(|v| !v.is_null());
    let text = |k: &str| get(k).map_or("-".to_string(), plain);
    let seconds = get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
    let states = get("states_checked").and_then(Value::as_u64).unwrap_or(0);
    let mut rows: Vec<(String, String)> = [
        "seed",
        "seeds",
        "tier",
        "filesystem",
        "mutant",
        "shard",
        "stopped_by",
        "workloads",
        "failing_workloads",
        "incomplete_runs",
        "errors",
    ]
    .iter()
    .filter(|k| get(k).is_some())
    .map(|k| (k.replace('_', " "), esc(&text(k))))
    .collect();
    rows.push((
        "states checked".into(),
        format!(
            "{states} ({:.0} states/s over {seconds:.1} s)",
            states as f64 / seconds.max(1e-9)
        ),
    ));
    if let Some(budget) = get("budget_seconds").and_then(Value::as_f64) {
        rows.push(("budget".into(), format!("{budget:.0} s")));
    }
    for key in ["options", "ops_by_kind", "ops_skipped_by_kind"] {
        if let Some(map) = get(key).and_then(Value::as_object) {
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
            rows.push((key.replace('_', " "), esc(&parts.join(", "))));
        }
    }
    let findings = report.get("findings").and_then(Value::as_array);
    let n = findings.map_or(0, Vec::len);
    let verdict = if n == 0 {
        badge(true, "no finding")
    } else {
        badge(false, &format!("{n} findings"))
    };
    rows.insert(0, ("verdict".into(), verdict));
    let mut body = section("summary", "Summary", &facts("summary-facts", &rows));
    body.push_str(&findings_section(findings.map_or(&[][..], Vec::as_slice)));
    body.push_str(&states_chart(report));
    page(&format!("powercut campaign: {n} findings"), &body)
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn findings_section(findings: &[Value]) -> String {
    if findings.is_empty() {
        return section("findings", "Findings", "<p>None.</p>");
    }
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            let s = |k: &str| f.get(k).map(plain).unwrap_or_default();
            let first = match f.get("seconds").and_then(Value::as_f64) {
                Some(t) => format!("{} after {t:.2} s", s("workload")),
                None => s("workload"),
            };
            vec![
                format!("<code>{}</code>", esc(&s("signature"))),
                esc(&s("invariant")),
                esc(&first),
                esc(&s("hits")),
                format!(
                    "{}<p class=\"shape\">expected {}; found {}</p>",
                    command(&s("repro")),
                    esc(&s("expected")),
                    esc(&s("found"))
                ),
            ]
        })
        .collect();
    let inner = table(
        "findings-table",
        &["signature", "invariant", "first seen", "hits", "reproducer"],
        &rows,
        |_| "bad",
    );
    section(
        "findings",
        &format!("Findings ({})", findings.len()),
        &inner,
    )
}

/// States checked over the campaign's seconds: `states_over_time` when the report has it,
/// else the runs of `workloads_run` one after the other (run time summed, an approximation).
fn states_chart(report: &Value) -> String {
    let mut note = "";
    let mut points: Vec<(f64, f64)> = report
        .get("states_over_time")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    if points.is_empty() {
        let (mut t, mut n) = (0.0, 0.0);
        for run in report
            .get("workloads_run")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            t += run.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
            n += run
                .get("states_checked")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            points.push((t, n));
        }
        note = "<p>This report has no time series: the runs are summed one after the other.</p>";
    }
    if points.is_empty() {
        return section(
            "states-over-time",
            "States checked over time",
            "<p>No run.</p>",
        );
    }
    points.insert(0, (0.0, 0.0));
    let events: Vec<(f64, String)> = report
        .get("findings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let t = f.get("seconds")?.as_f64()?;
            Some((
                t,
                format!("finding {} at {t:.2} s", f.get("signature").map(plain)?),
            ))
        })
        .collect();
    let svg = chart::line(
        "states-chart",
        "seconds",
        "crash states checked",
        &points,
        &events,
    );
    section(
        "states-over-time",
        "States checked over time",
        &format!("{note}<div class=\"scroll\">{svg}</div>"),
    )
}

/// A `powercut mutants --json` summary.
pub fn mutants(summary: &Value) -> String {
    let list = summary.get("mutants").and_then(Value::as_array);
    let rows: Vec<Vec<String>> = list
        .into_iter()
        .flatten()
        .map(|m| {
            let s = |k: &str| {
                m.get(k)
                    .filter(|v| !v.is_null())
                    .map(plain)
                    .unwrap_or_default()
            };
            let caught = m.get("caught").and_then(Value::as_bool) == Some(true);
            vec![
                esc(&s("name")),
                badge(caught, if caught { "caught" } else { "escaped" }),
                esc(&s("invariant")),
                esc(&s("workload")),
                esc(&s("states_checked")),
                esc(&s("seconds_to_catch")),
                if s("repro").is_empty() {
                    String::new()
                } else {
                    command(&s("repro"))
                },
            ]
        })
        .collect();
    let escaped: Vec<bool> = list
        .into_iter()
        .flatten()
        .map(|m| m.get("caught").and_then(Value::as_bool) != Some(true))
        .collect();
    let passed = summary.get("passed").and_then(Value::as_bool) == Some(true);
    let facts_rows = vec![
        (
            "verdict".to_string(),
            badge(
                passed,
                if passed {
                    "every mutant caught, the real engine clean"
                } else {
                    "failed"
                },
            ),
        ),
        (
            "baseline violations".to_string(),
            esc(&summary
                .get("baseline_violations")
                .map(plain)
                .unwrap_or_default()),
        ),
        (
            "budget per run".to_string(),
            esc(&summary
                .get("budget_per_run_seconds")
                .map(plain)
                .unwrap_or_default()),
        ),
    ];
    let mut body = section("summary", "Summary", &facts("summary-facts", &facts_rows));
    let inner = table(
        "findings-table",
        &[
            "mutant",
            "verdict",
            "invariant",
            "workload",
            "states",
            "seconds to catch",
            "reproducer",
        ],
        &rows,
        |i| if escaped[i] { "bad" } else { "ok" },
    );
    body.push_str(&section("findings", "Mutants", &inner));
    let points: Vec<(f64, f64)> = list
        .into_iter()
        .flatten()
        .scan((0.0, 0.0), |acc, m| {
            acc.0 += m
                .get("seconds_to_catch")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            acc.1 += m
                .get("states_checked")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            Some(*acc)
        })
        .collect();
    let mut all = vec![(0.0, 0.0)];
    all.extend(points);
    let svg = chart::line(
        "states-chart",
        "seconds to catch, summed",
        "crash states checked",
        &all,
        &[],
    );
    body.push_str(&section(
        "states-over-time",
        "States checked over time",
        &format!("<p>Each mutant's runs one after the other, up to its catch.</p><div class=\"scroll\">{svg}</div>"),
    ));
    page("powercut mutants", &body)
}
