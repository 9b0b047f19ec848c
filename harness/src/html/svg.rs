//! The timeline picture: log position left to right, one row per owner of sectors, writes as
//! marks in their rows, FLUSH and FUA as lines, ack marks as labelled ticks, epochs shaded.
//! More entries than [`MAX_COLUMNS`] are drawn in buckets (a mark's shade says how many
//! writes it stands for), so a 10,000-entry log stays one readable picture.

use std::fmt::Write as _;

use super::doc::esc;
use super::model::{mark_short, mark_words, Item, Kind, Timeline};
use super::state::{Fate, StateView};

/// Most columns drawn; a longer range is bucketed.
pub const MAX_COLUMNS: u64 = 1000;
const LEFT: f64 = 230.0;
const PLOT: f64 = 960.0;
const MARK_BAND: f64 = 64.0;
const ROW: f64 = 20.0;
const AXIS: f64 = 26.0;
/// Least distance between two mark labels on one of the three label lines.
const LABEL_GAP: f64 = 150.0;

/// What to draw.
#[derive(Debug)]
pub struct View<'a> {
    pub id: &'a str,
    /// Entries `[from, to)`.
    pub from: u64,
    pub to: u64,
    pub state: Option<&'a StateView>,
    /// Extra vertical markers: (entry, css class, label).
    pub markers: &'a [(u64, &'static str, String)],
}

/// Entries `[from, to)` of one column.
#[derive(Debug, Clone, Copy)]
struct Column {
    from: u64,
    to: u64,
    x: f64,
    width: f64,
}

fn columns(from: u64, to: u64) -> Vec<Column> {
    let len = to.saturating_sub(from).max(1);
    let n = len.min(MAX_COLUMNS);
    let width = PLOT / n as f64;
    (0..n)
        .map(|c| Column {
            from: from + c * len / n,
            to: from + (c + 1) * len / n,
            x: LEFT + c as f64 * width,
            width,
        })
        .collect()
}

/// The x of entry boundary `index` (the left edge of the entry).
fn x_of(view: &View<'_>, index: u64) -> f64 {
    let len = view.to.saturating_sub(view.from).max(1) as f64;
    LEFT + (index.saturating_sub(view.from) as f64 / len) * PLOT
}

/// The SVG element of `view`.
pub fn render(timeline: &Timeline, view: &View<'_>) -> String {
    let rows = timeline.rows.len().max(1) as f64;
    let height = MARK_BAND + rows * ROW + AXIS;
    let width = LEFT + PLOT + 20.0;
    let cols = columns(view.from, view.to);
    let bucketed = cols.first().is_some_and(|c| c.to - c.from > 1);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" id=\"{}\" \
         viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" \
         data-from=\"{}\" data-to=\"{}\" data-bucketed=\"{bucketed}\" role=\"img\">\n",
        esc(view.id),
        view.from,
        view.to
    );
    let _ = writeln!(
        s,
        "<title>block log entries {} to {}{}</title>",
        view.from,
        view.to.saturating_sub(1),
        if bucketed {
            " (each column several entries)"
        } else {
            ""
        }
    );
    s.push_str(&epochs(timeline, view, height));
    s.push_str(&row_labels(timeline));
    s.push_str(&writes(timeline, view, &cols));
    s.push_str(&lines(timeline, &cols, height));
    s.push_str(&marks(timeline, &cols));
    s.push_str(&markers(view, height));
    s.push_str(&axis(view, height));
    s.push_str("</svg>\n");
    s
}

fn epochs(timeline: &Timeline, view: &View<'_>, height: f64) -> String {
    let mut s = String::from("<g class=\"epochs\">\n");
    for (k, (a, b)) in timeline.epochs.iter().enumerate() {
        if *b <= view.from || *a >= view.to {
            continue;
        }
        let (x0, x1) = (
            x_of(view, (*a).max(view.from)),
            x_of(view, (*b).min(view.to)),
        );
        if x1 - x0 < 2.0 {
            continue;
        }
        let _ = writeln!(
            s,
            "<rect class=\"epoch e{}\" x=\"{x0:.1}\" y=\"0\" width=\"{:.1}\" height=\"{:.1}\">\
             <title>epoch {k}: entries {a} to {}</title></rect>",
            k % 2,
            x1 - x0,
            height - AXIS,
            b - 1
        );
    }
    s.push_str("</g>\n");
    s
}

fn row_labels(timeline: &Timeline) -> String {
    let mut s = String::from("<g class=\"rows\">\n");
    let _ = writeln!(
        s,
        "<text class=\"rowname\" x=\"4\" y=\"{:.1}\">acknowledgements</text>",
        MARK_BAND - 6.0
    );
    for (r, name) in timeline.rows.iter().enumerate() {
        let y = MARK_BAND + r as f64 * ROW;
        let _ = writeln!(
            s,
            "<rect class=\"rowband r{}\" x=\"{LEFT}\" y=\"{y:.1}\" width=\"{PLOT}\" \
             height=\"{ROW}\"/><text class=\"rowname\" x=\"4\" y=\"{:.1}\">{}</text>",
            r % 2,
            y + ROW * 0.7,
            esc(&truncate(name, 34))
        );
    }
    s.push_str("</g>\n");
    s
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut t: String = text.chars().take(chars - 1).collect();
    t.push('…');
    t
}

/// Writes and discards, one mark per column and row holding any.
fn writes(timeline: &Timeline, view: &View<'_>, cols: &[Column]) -> String {
    let mut s = String::from("<g class=\"writes\">\n");
    for col in cols {
        let items = &timeline.items[col.from as usize..col.to as usize];
        for r in 0..timeline.rows.len() {
            let here: Vec<&Item> = items.iter().filter(|i| i.row == Some(r)).collect();
            if here.is_empty() {
                continue;
            }
            s.push_str(&write_mark(col, r, &here, view.state));
        }
    }
    s.push_str("</g>\n");
    s
}

fn write_mark(col: &Column, row: usize, here: &[&Item], state: Option<&StateView>) -> String {
    let fate = state.map(|st| {
        here.iter()
            .map(|i| st.fate(i.index))
            .max_by_key(|f| match f {
                Fate::Dropped => 3,
                Fate::Torn { .. } => 2,
                Fate::Kept => 1,
                Fate::AfterCut => 0,
            })
            .unwrap_or(Fate::Kept)
    });
    let mut class = String::from("w");
    if here.iter().any(|i| i.fua) {
        class.push_str(" fua");
    }
    if here.iter().any(|i| i.kind == Kind::Discard) {
        class.push_str(" discard");
    }
    if let Some(f) = fate {
        class.push(' ');
        class.push_str(f.class());
    }
    let title = match here {
        [one] => one.describe(),
        _ => format!(
            "entries {} to {}: {} writes",
            col.from,
            col.to - 1,
            here.len()
        ),
    };
    let shade = (0.35 + 0.65 * (here.len() as f64 / (col.to - col.from) as f64)).min(1.0);
    let y = MARK_BAND + row as f64 * ROW + 3.0;
    format!(
        "<rect class=\"{class}\" data-entry=\"{}\" x=\"{:.2}\" y=\"{y:.1}\" width=\"{:.2}\" \
         height=\"{:.1}\" fill-opacity=\"{shade:.2}\"><title>{}</title></rect>\n",
        here[0].index,
        col.x + col.width * 0.1,
        (col.width * 0.8).max(0.8),
        ROW - 6.0,
        esc(&title)
    )
}

/// FLUSH and FUA as vertical lines across the rows.
fn lines(timeline: &Timeline, cols: &[Column], height: f64) -> String {
    let mut s = String::from("<g class=\"lines\">\n");
    for col in cols {
        let items = &timeline.items[col.from as usize..col.to as usize];
        let x = col.x + col.width / 2.0;
        for (class, pick) in [
            ("flush", (|i: &Item| i.flush) as fn(&Item) -> bool),
            ("fua-line", |i: &Item| i.fua),
        ] {
            let n = items.iter().filter(|i| pick(i)).count();
            if n == 0 {
                continue;
            }
            let what = if class == "flush" { "FLUSH" } else { "FUA" };
            let title = if items.len() == 1 {
                items[0].describe()
            } else {
                format!("{n} {what} in entries {} to {}", col.from, col.to - 1)
            };
            let _ = writeln!(
                s,
                "<line class=\"{class}\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{:.1}\" \
                 y2=\"{:.1}\"><title>{}</title></line>",
                MARK_BAND - 14.0,
                height - AXIS,
                esc(&title)
            );
        }
    }
    s.push_str("</g>\n");
    s
}

/// Ack marks as ticks in the band above the rows, labelled where there is room.
fn marks(timeline: &Timeline, cols: &[Column]) -> String {
    let mut s = String::from("<g class=\"marks\">\n");
    let mut last_label = [f64::MIN; 3];
    for col in cols {
        let items = &timeline.items[col.from as usize..col.to as usize];
        let here: Vec<&Item> = items.iter().filter(|i| i.kind == Kind::Mark).collect();
        let Some(first) = here.first() else {
            continue;
        };
        let x = col.x + col.width / 2.0;
        let label = first.label.as_deref().unwrap_or("");
        let title = if here.len() == 1 {
            format!("entry {}: {}", first.index, mark_words(label))
        } else {
            format!(
                "{} marks in entries {} to {}, first {}",
                here.len(),
                col.from,
                col.to - 1,
                mark_words(label)
            )
        };
        let _ = writeln!(
            s,
            "<line class=\"mark\" data-entry=\"{}\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{:.1}\" \
             y2=\"{MARK_BAND}\"><title>{}</title></line>",
            first.index,
            MARK_BAND - 12.0,
            esc(&title)
        );
        if let Some(line) = (0..3).find(|l| x - last_label[*l] >= LABEL_GAP) {
            last_label[line] = x;
            let _ = writeln!(
                s,
                "<text class=\"marklabel\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                x + 2.0,
                14.0 + line as f64 * 14.0,
                esc(&truncate(&mark_short(label), 22))
            );
        }
    }
    s.push_str("</g>\n");
    s
}

fn markers(view: &View<'_>, height: f64) -> String {
    let mut s = String::from("<g class=\"markers\">\n");
    let mut list: Vec<(u64, &str, String)> = view
        .markers
        .iter()
        .map(|(i, c, l)| (*i, *c, l.clone()))
        .collect();
    if let Some(st) = view.state {
        list.push((st.cut, "cut", format!("power cut (cut {})", st.cut)));
    }
    for (index, class, label) in list {
        if index < view.from || index > view.to {
            continue;
        }
        let x = x_of(view, index);
        let _ = writeln!(
            s,
            "<line class=\"{class}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"0\" y2=\"{:.1}\">\
             <title>{}</title></line><text class=\"{class}-label\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            height - AXIS,
            esc(&label),
            x + 3.0,
            height - AXIS - 4.0,
            esc(&label)
        );
    }
    s.push_str("</g>\n");
    s
}

fn axis(view: &View<'_>, height: f64) -> String {
    let mut s = String::from("<g class=\"axis\">\n");
    let len = view.to.saturating_sub(view.from).max(1);
    let step = nice_step(len / 8);
    let y = height - AXIS;
    let _ = writeln!(
        s,
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>",
        LEFT + PLOT
    );
    let mut i = view.from.div_ceil(step) * step;
    while i <= view.to {
        let x = x_of(view, i);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y:.1}\" y2=\"{:.1}\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\">{i}</text>",
            y + 4.0,
            y + 16.0
        );
        i += step;
    }
    let _ = writeln!(
        s,
        "<text class=\"axisname\" x=\"4\" y=\"{:.1}\">log entry</text>",
        y + 16.0
    );
    s.push_str("</g>\n");
    s
}

/// 1, 2 or 5 times a power of ten, at least `raw` (and 1).
fn nice_step(raw: u64) -> u64 {
    let mut p = 1;
    loop {
        for m in [1, 2, 5] {
            if m * p >= raw.max(1) {
                return m * p;
            }
        }
        p *= 10;
    }
}
