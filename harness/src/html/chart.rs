//! A line chart of one series (states checked against seconds), with findings marked.

use std::fmt::Write as _;

use super::doc::esc;

const W: f64 = 900.0;
const H: f64 = 260.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 30.0;

/// `points` are (x, y), x increasing; `events` are (x, label) drawn as vertical lines.
pub fn line(
    id: &str,
    x_name: &str,
    y_name: &str,
    points: &[(f64, f64)],
    events: &[(f64, String)],
) -> String {
    let max_x = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let px = |x: f64| LEFT + x / max_x * (W - LEFT - 20.0);
    let py = |y: f64| H - BOTTOM - y / max_y * (H - BOTTOM - 20.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"{}\" viewBox=\"0 0 {W} {H}\" \
         width=\"{W}\" height=\"{H}\" role=\"img\"><title>{} against {}</title>\n",
        esc(id),
        esc(y_name),
        esc(x_name)
    );
    for k in 0..=4 {
        let y = max_y * f64::from(k) / 4.0;
        let _ = writeln!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}</text>",
            W - 20.0,
            py(y),
            py(y),
            LEFT - 4.0,
            py(y) + 4.0,
            y
        );
        let x = max_x * f64::from(k) / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x:.1}</text>",
            px(x),
            H - BOTTOM + 16.0
        );
    }
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
        .collect();
    let _ = writeln!(
        s,
        "<polyline class=\"series\" points=\"{}\"><title>{}</title></polyline>",
        path.join(" "),
        esc(y_name)
    );
    for (x, label) in events {
        let _ = writeln!(
            s,
            "<line class=\"finding-at\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"10\" y2=\"{:.1}\">\
             <title>{}</title></line>",
            px(*x),
            px(*x),
            H - BOTTOM,
            esc(label)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text></svg>",
        W - 20.0,
        H - 2.0,
        esc(x_name)
    );
    s
}
