//! The HTML report: its structure (parsed with an HTML parser), bad input, long logs, and an
//! end-to-end look in headless Chromium at the report of a failing run (a synthetic recording
//! whose log acknowledges a record before its flush, as mutant M1 does).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use scraper::{Html, Selector};

const POWERCUT: &str = env!("CARGO_BIN_EXE_powercut");

fn powercut(args: &[&str]) -> Output {
    Command::new(POWERCUT).args(args).output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A synthetic failing recording of about `entries` entries and its report page.
fn fixture(dir: &Path, entries: u64) -> (PathBuf, Html) {
    let rec = dir.join("rec");
    let n = entries.to_string();
    ok(powercut(&[
        "report-fixture",
        rec.to_str().unwrap(),
        "--entries",
        &n,
    ]));
    let page = dir.join("report.html");
    ok(powercut(&[
        "report",
        rec.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]));
    let text = std::fs::read_to_string(&page).unwrap();
    (page, Html::parse_document(&text))
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

fn text(e: &scraper::ElementRef<'_>) -> String {
    e.text().collect()
}

#[test]
fn check_page_has_summary_timeline_and_the_violation_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let (_, doc) = fixture(dir.path(), 400);
    assert_eq!(select(&doc, "#summary table.facts").len(), 1);
    // What each phase covered and where the time of a state went.
    let summary = text(&select(&doc, "#summary table.facts")[0]);
    assert!(
        summary.contains("states: 401 of 401 states in 4.0 s"),
        "{summary}"
    );
    assert!(summary.contains("mount 6.0 (60%)"), "{summary}");
    let invariants = select(&doc, "#invariants tbody tr");
    assert_eq!(invariants.len(), powercut_oracles::report::INVARIANTS.len());
    let i1 = invariants
        .iter()
        .find(|r| text(r).starts_with("I1"))
        .unwrap();
    assert!(text(i1).contains("violated (1)"), "{}", text(i1));
    assert!(
        invariants
            .iter()
            .filter(|r| text(r).contains("held"))
            .count()
            == powercut_oracles::report::INVARIANTS.len() - 1
    );
    // The timeline: rows found from the recording, writes, flushes, marks and epochs.
    let rows: Vec<String> = select(&doc, "svg#overview g.rows text.rowname")
        .iter()
        .map(text)
        .collect();
    assert!(rows.iter().any(|r| r == "file-system metadata"), "{rows:?}");
    assert_eq!(
        rows.iter()
            .filter(|r| r.starts_with("journal segment"))
            .count(),
        2
    );
    assert!(rows.iter().any(|r| r.starts_with("other data")), "{rows:?}");
    for css in [
        "rect.w",
        "line.flush",
        "line.mark",
        "text.marklabel",
        "rect.epoch",
        "line.violation-at",
    ] {
        assert!(
            !select(&doc, &format!("svg#overview {css}")).is_empty(),
            "{css}"
        );
    }
    // The violation: its state drawn with the cut, the dropped write apart from kept ones.
    let v = select(&doc, "#violations div.violation");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].value().attr("data-invariant"), Some("I1"));
    let lost = select(&doc, "#violation-1 p.lost");
    assert_eq!(lost.len(), 1);
    let words = text(&lost[0]);
    assert!(
        words.starts_with("LSN 57, acknowledged at mark r:57-57:")
            && words.contains("is missing: its write (entry ")
            && words.ends_with("was dropped in this state."),
        "{words}"
    );
    assert_eq!(select(&doc, "#violation-1-svg line.cut").len(), 1);
    assert!(!select(&doc, "#violation-1-svg rect.w.dropped").is_empty());
    assert!(!select(&doc, "#violation-1-svg rect.w.kept").is_empty());
    assert!(!select(&doc, "#violation-1-svg rect.w.after").is_empty());
    let cmds: Vec<String> = select(&doc, "#violation-1 .cmd code")
        .iter()
        .map(text)
        .collect();
    assert!(
        cmds[0].starts_with("powercut repro ") && cmds[0].contains("--log "),
        "{cmds:?}"
    );
    assert!(cmds[1].starts_with("powercut shrink "), "{cmds:?}");
    // Self-contained: nothing to fetch.
    for css in ["script[src]", "link[href]", "img", "iframe"] {
        assert!(select(&doc, css).is_empty(), "{css}");
    }
    assert_eq!(select(&doc, "script#log-data").len(), 1);
}

#[test]
fn a_long_log_is_drawn_in_buckets_and_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let (page, doc) = fixture(dir.path(), 10_000);
    let overview = select(&doc, "svg#overview");
    assert_eq!(overview[0].value().attr("data-bucketed"), Some("true"));
    assert!(select(&doc, "svg#overview rect.w").len() <= 5 * 1000);
    // The violation is still drawn entry by entry.
    assert_eq!(
        select(&doc, "#violation-1-svg")[0]
            .value()
            .attr("data-bucketed"),
        Some("false")
    );
    let size = std::fs::metadata(&page).unwrap().len();
    assert!(size < 2 << 20, "{size} bytes");
}

#[test]
fn bad_input_is_named_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let expect = |args: &[&str], words: &[&str]| {
        let out = powercut(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for w in words {
            assert!(err.contains(w), "{args:?}: {err}");
        }
    };
    let bad = d.join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    expect(
        &["report", bad.to_str().unwrap()],
        &["bad.json", "is not a JSON report"],
    );
    let other = d.join("other.json");
    std::fs::write(&other, "{\"a\": 1}").unwrap();
    expect(
        &["report", other.to_str().unwrap()],
        &["other.json", "is not a powercut report"],
    );
    let partial = d.join("partial.json");
    std::fs::write(&partial, "{\"log_hash\": \"0badcafe\"}").unwrap();
    expect(
        &["report", partial.to_str().unwrap()],
        &["partial.json", "missing field"],
    );
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    expect(
        &["report", empty.to_str().unwrap()],
        &["empty holds no report", "report.json"],
    );
    expect(
        &["report", d.join("nope").to_str().unwrap()],
        &["nope: no such file"],
    );
}

#[test]
fn campaign_page_has_findings_and_states_over_time() {
    let dir = tempfile::tempdir().unwrap();
    let report = serde_json::json!({
        "seed": 1, "tier": "sim", "filesystem": "ext4", "mutant": "M1", "seconds": 2.0,
        "budget_seconds": 2.0, "stopped_by": "budget", "workloads": 3, "states_checked": 300,
        "states_over_time": [[0.5, 100], [1.0, 200], [2.0, 300]],
        "findings": [{"signature": "abcdef012345", "invariant": "I1", "workload": "gen-1",
                      "seconds": 0.4, "hits": 2, "repro": "powercut sim W.yaml --seed 3",
                      "expected": "records 1..=2", "found": "missing LSN N"}],
        "workloads_run": []
    });
    let path = dir.path().join("campaign.json");
    std::fs::write(&path, report.to_string()).unwrap();
    let page = dir.path().join("c.html");
    ok(powercut(&[
        "report",
        path.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]));
    let doc = Html::parse_document(&std::fs::read_to_string(&page).unwrap());
    let rows = select(&doc, "#findings-table tbody tr");
    assert_eq!(rows.len(), 1);
    assert!(text(&rows[0]).contains("abcdef012345") && text(&rows[0]).contains("I1"));
    assert_eq!(select(&doc, "svg#states-chart polyline.series").len(), 1);
    assert_eq!(select(&doc, "svg#states-chart line.finding-at").len(), 1);
}

fn chromium() -> Result<PathBuf, String> {
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| ["/usr/bin", "/usr/local/bin"].map(|d| Path::new(d).join(name)))
        .find(|p| p.is_file())
        .ok_or_else(|| "chromium is not installed (scripts/test.sh installs it)".to_string())
}

#[test]
fn failing_run_report_in_headless_chromium() {
    let browser = chromium();
    if !powercut_writer::capability::runnable(browser.clone().map(|_| ())) {
        return;
    }
    let browser = browser.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (page, _) = fixture(dir.path(), 400);
    let url = format!("file://{}", page.display());
    let profile = dir.path().join("profile");
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1300,2400",
    ];
    let run = |extra: &str| {
        Command::new(&browser)
            .args(base)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = run("--dump-dom");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let doc = Html::parse_document(&String::from_utf8_lossy(&dom.stdout));
    // The script ran: the detail view was drawn from the embedded log data.
    assert_eq!(select(&doc, "#detail svg#detail-svg").len(), 1);
    assert!(!select(&doc, "#detail svg rect.w").is_empty());
    assert!(!select(&doc, "svg#overview rect.w").is_empty());
    let lost = select(&doc, "#violation-1 p.lost");
    assert!(text(&lost[0]).contains("was dropped in this state"));
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let shot = target.join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let out = run(&format!("--screenshot={}", shot.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&shot).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    println!("screenshot: {}", shot.display());
}
