//! HTML building blocks for the status page: escaping, the figure cells that carry the
//! `/metrics` hook, the CSP nonce, and the document shell (inline style and script).
//!
//! Owns: every byte of markup the page emits around its values. Must never: write a value
//! that came from outside without [`esc`], reference an external URL (the page must work on
//! an air-gapped node), or emit inline style attributes or handlers (the CSP forbids them).

use super::samples::Samples;
use std::fmt::Write;

/// Longest text shown from a sender-controlled value (enabler ids, versions, names: up to
/// 255 characters each); the rest is cut with "…", which bounds the page's size.
pub const MAX_TEXT_CHARS: usize = 80;

/// HTML-escapes `s` for text and for double- or single-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// [`esc`] of `s` cut to [`MAX_TEXT_CHARS`] characters.
pub fn esc_cut(s: &str) -> String {
    match s.char_indices().nth(MAX_TEXT_CHARS) {
        Some((i, _)) => format!("{}…", esc(&s[..i])),
        None => esc(s),
    }
}

/// A value as the page prints it: integral numbers without a fraction, others as `/metrics`
/// printed them (so that the text parses to the same number).
pub fn number(raw: &str) -> String {
    match raw.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        _ => raw.to_owned(),
    }
}

/// Bytes for a person (KiB, MiB...), next to the exact figure.
pub fn human_bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The element showing the sample `name{labels}`, hooked for tests and scripts:
/// `<td class="n" data-metric="name" data-labels="k=&quot;v&quot;">1234</td>`. Volatile
/// figures (uptime, flush counts) are marked `data-volatile`: they move between two scrapes.
/// An absent sample renders as "–" without a hook.
pub fn figure(out: &mut String, tag: &str, samples: &Samples, name: &str, labels: &str) {
    match samples.get(name, labels) {
        Some(s) => {
            let _ = write!(
                out,
                "<{tag} class=\"n\" data-metric=\"{}\" data-labels=\"{}\"{}>{}</{tag}>",
                esc(name),
                esc(labels),
                if is_volatile(name) {
                    " data-volatile=\"\""
                } else {
                    ""
                },
                esc(&number(&s.value))
            );
        }
        None => {
            let _ = write!(out, "<{tag} class=\"n\">–</{tag}>");
        }
    }
}

/// The samples that change without any traffic: the clock, and the flusher's own work
/// (persisted gauges are emitted at every flush), the probes' and the checks'.
pub fn is_volatile(name: &str) -> bool {
    matches!(
        name,
        "statsgate_uptime_seconds"
            | "statsgate_flushes_total"
            | "statsgate_last_flush_timestamp_seconds"
            | "statsgate_flush_duration_seconds"
            | "statsgate_metrics_emitted_total"
    ) || name.starts_with("statsgate_probe_")
        || name.starts_with("statsgate_check_")
}

/// A fresh CSP nonce: 128 bits from the kernel's generator (hex).
pub fn nonce() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !ok {
        // Every value on the page is escaped, so the nonce is a second line of defence; a
        // weaker one beats none.
        bytes = fastrand::u128(..).to_le_bytes();
    }
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The response's `Content-Security-Policy`: nothing but this response's own inline style and
/// script, and fetches of this origin (the refresh).
pub fn csp(nonce: &str) -> String {
    format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// Seconds between refreshes when JavaScript runs.
pub const REFRESH_SECONDS: u32 = 5;

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1d2329;--muted:#5f6b76;--bg:#fff;--card:#f5f7f9;--line:#d5dbe1;\
--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--plot:#0969da}\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#8d96a0;--bg:#0d1117;--card:#161b22;\
--line:#30363d;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--plot:#58a6ff}}\
*{box-sizing:border-box}\
body{margin:0;font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);background:var(--bg)}\
header{display:flex;flex-wrap:wrap;gap:.5em 1.5em;align-items:baseline;padding:.8em 1.2em;border-bottom:1px solid var(--line)}\
header h1{font-size:1.3em;margin:0}\
main{padding:.5em 1.2em 2em;display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:1em}\
section{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.6em .9em}\
section.wide{grid-column:1/-1}\
h2{font-size:1.05em;margin:.2em 0 .5em}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.15em .5em .15em 0;border-bottom:1px solid var(--line);vertical-align:top}\
th{font-weight:600;color:var(--muted)}table.kv th{width:60%}\
td.n,span.n{font-variant-numeric:tabular-nums;text-align:right}\
.muted,.more{color:var(--muted)}\
.state{font-weight:700;text-transform:uppercase}\
.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}\
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:.8em}\
figure{margin:0}figcaption{font-size:.9em;color:var(--muted)}\
svg{width:100%;height:auto;display:block}\
svg .axis{stroke:var(--line);fill:none}svg .line{stroke:var(--plot);fill:none;stroke-width:1.5}\
svg .band{fill:var(--plot);opacity:.15}svg text{fill:var(--muted);font-size:10px}\
#stale{color:var(--bad)}\
";

/// Marks `html[data-js=on]` (so a test tells a scripted page from one without script), and
/// refreshes `<main>` in place: fetches this page, swaps the element, counts the swaps on
/// `body[data-refreshes]`; a failed fetch shows the "stale" line. Scripts in the fetched text
/// never run (DOMParser does not execute them).
const SCRIPT: &str = "\
(function(){document.documentElement.dataset.js='on';\
var busy=false,stale=document.getElementById('stale');\
function tick(){if(busy)return;busy=true;\
fetch(location.pathname,{cache:'no-store',credentials:'same-origin'})\
.then(function(r){if(!r.ok)throw new Error('HTTP '+r.status);return r.text()})\
.then(function(t){var m=new DOMParser().parseFromString(t,'text/html').querySelector('main'),\
o=document.querySelector('main');if(!m||!o)throw new Error('no main');\
o.replaceWith(document.adoptNode(m));\
document.body.dataset.refreshes=String(Number(document.body.dataset.refreshes||0)+1);\
stale.hidden=true})\
.catch(function(e){stale.textContent='refresh failed ('+e.message+'): figures may be old';stale.hidden=false})\
.then(function(){busy=false})}\
setInterval(tick,INTERVAL)})();";

/// The whole document around `header` and `main` (both already escaped markup).
pub fn document(nonce: &str, header: &str, main: &str) -> String {
    let script = SCRIPT.replace("INTERVAL", &(REFRESH_SECONDS * 1000).to_string());
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>statsgate status</title><style nonce=\"{nonce}\">{STYLE}</style></head>\
         <body><header>{header}<span id=\"stale\" hidden></span></header>\n\
         <main>{main}</main>\n<script nonce=\"{nonce}\">{script}</script></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_both_quotes() {
        assert_eq!(
            esc(r#"<script>alert('x')&"</script>"#),
            "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn cuts_long_text_on_a_character_boundary() {
        let long = "é".repeat(200);
        let cut = esc_cut(&long);
        assert_eq!(cut.chars().count(), MAX_TEXT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(esc_cut("short"), "short");
    }

    #[test]
    fn numbers_print_as_they_parse() {
        assert_eq!(number("3.0"), "3");
        assert_eq!(number("12"), "12");
        assert_eq!(number("0.0015"), "0.0015");
        assert_eq!(number("NaN"), "NaN");
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
    }

    #[test]
    fn a_figure_names_its_sample() {
        let s = Samples::parse("statsgate_lines_accepted_total{type=\"counter\"} 1234\n");
        let mut out = String::new();
        figure(
            &mut out,
            "td",
            &s,
            "statsgate_lines_accepted_total",
            "type=\"counter\"",
        );
        assert_eq!(
            out,
            "<td class=\"n\" data-metric=\"statsgate_lines_accepted_total\" \
             data-labels=\"type=&quot;counter&quot;\">1234</td>"
        );
        out.clear();
        figure(&mut out, "td", &s, "absent", "");
        assert!(!out.contains("data-metric"), "{out}");
    }

    #[test]
    fn nonces_differ_and_the_policy_names_them() {
        let (a, b) = (nonce(), nonce());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(csp(&a).contains(&format!("script-src 'nonce-{a}'")));
        let doc = document(&a, "h", "m");
        assert_eq!(doc.matches(&format!("nonce=\"{a}\"")).count(), 2);
        assert!(!doc.contains("http://") && !doc.contains("https://"));
    }
}
