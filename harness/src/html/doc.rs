//! Writing HTML text: escaping, and the page skeleton every report shares (inline CSS and
//! script, no external resource, so the file reads the same from a CI artifact as from disk).

use std::fmt::Write as _;

use super::assets::{SCRIPT, STYLE};

/// `text` safe inside an element or a quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// JSON text safe inside a `<script type="application/json">` element: `<` is escaped so a
/// label holding `</script>` cannot end the element.
pub fn json_for_script(value: &serde_json::Value) -> String {
    value.to_string().replace('<', "\\u003c")
}

/// A whole page: `title`, then `body` (already HTML), with the shared style and script.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n{body}\n\
         <script>{SCRIPT}</script>\n</body>\n</html>\n",
        esc(title),
        esc(title)
    )
}

/// A `<section>` with an id and a heading.
pub fn section(id: &str, heading: &str, inner: &str) -> String {
    format!(
        "<section id=\"{}\">\n<h2>{}</h2>\n{inner}\n</section>\n",
        esc(id),
        esc(heading)
    )
}

/// A two-column table of names and values (values already HTML).
pub fn facts(id: &str, rows: &[(String, String)]) -> String {
    let mut s = format!("<table class=\"facts\" id=\"{}\">\n", esc(id));
    for (name, value) in rows {
        let _ = writeln!(s, "<tr><th>{}</th><td>{value}</td></tr>", esc(name));
    }
    s.push_str("</table>\n");
    s
}

/// A table with a header row; cells already HTML. `row_class` gives each row a class.
pub fn table(
    id: &str,
    header: &[&str],
    rows: &[Vec<String>],
    row_class: impl Fn(usize) -> &'static str,
) -> String {
    let mut s = format!("<table class=\"grid\" id=\"{}\">\n<thead><tr>", esc(id));
    for h in header {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for (i, row) in rows.iter().enumerate() {
        let _ = write!(s, "<tr class=\"{}\">", row_class(i));
        for cell in row {
            let _ = write!(s, "<td>{cell}</td>");
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n");
    s
}

/// A command to copy: shown in a `<pre>` with a copy button (the script wires the buttons).
pub fn command(text: &str) -> String {
    format!(
        "<div class=\"cmd\"><pre><code>{}</code></pre><button type=\"button\" \
         class=\"copy\">copy</button></div>\n",
        esc(text)
    )
}

/// A verdict badge: `held` or `violated` (and the words shown).
pub fn badge(ok: bool, words: &str) -> String {
    let class = if ok { "held" } else { "violated" };
    format!("<span class=\"badge {class}\">{}</span>", esc(words))
}

/// An SI-ish rendering of a byte count.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_script_ends() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let v = serde_json::json!({"label": "</script><b>"});
        assert!(!json_for_script(&v).contains("</script>"));
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
