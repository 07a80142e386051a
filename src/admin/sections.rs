//! The status page's sections whose length depends on what senders and the configuration
//! do: the liveness tables (cut at [`MAX_GROUPS`] and [`MAX_INSTANCES`] rows), the checks'
//! and probes' counter families (one row per configured check or probe group), and the
//! charts.
//!
//! Owns: those sections' bounds. Must never: show more rows than its bounds, or write a
//! sender's value without [`esc_cut`].

use super::AdminState;
use super::html::{esc, esc_cut};
use super::samples::Samples;
use super::status::{nonzero_rows, row};
use crate::heartbeat::{Filter, State as Beat};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Rows of the liveness table by instance; the rest are counted in "… and N more".
pub const MAX_INSTANCES: usize = 50;
/// Rows of the liveness summary by enabler and version.
pub const MAX_GROUPS: usize = 30;

/// The charts, in order: (history name, caption); the `cpu`/`mem` ones only when present.
const CHARTS: [(&str, &str, bool); 6] = [
    ("statsgate.lines_accepted", "lines accepted per flush", true),
    ("statsgate.kernel_drops", "kernel drops per flush", true),
    ("statsgate.queue_bytes", "forward queue bytes", true),
    ("statsgate.series", "series per interval", true),
    ("cpu.idle_perc", "cpu idle %", false),
    ("mem.usable_perc", "memory usable %", false),
];

/// "… and N more" under a table cut at `shown` of `total` rows.
pub fn more(out: &mut String, total: usize, shown: usize) {
    if total > shown {
        let _ = write!(out, "<p class=\"more\">… and {} more</p>", total - shown);
    }
}

pub fn heartbeats(out: &mut String, s: &AdminState, samples: &Samples, now: u64) {
    out.push_str("<section id=\"heartbeats\" class=\"wide\"><h2>Heartbeats</h2>");
    let Some(beats) = &s.heartbeats else {
        out.push_str("<p class=\"muted\">heartbeats are not enabled</p></section>");
        return;
    };
    out.push_str("<table class=\"kv\">");
    row(
        out,
        samples,
        "senders tracked",
        "statsgate_heartbeat_senders",
        "",
    );
    for a in samples.family("statsgate_heartbeats_accepted_total") {
        let caption = format!("accepted via {}", a.label("via").unwrap_or(""));
        row(
            out,
            samples,
            &caption,
            "statsgate_heartbeats_accepted_total",
            &a.labels_raw,
        );
    }
    nonzero_rows(
        out,
        samples,
        "statsgate_heartbeats_rejected_total",
        "reason",
        "rejected",
    );
    row(
        out,
        samples,
        "untracked (table full)",
        "statsgate_heartbeats_untracked_total",
        "",
    );
    out.push_str("</table>");
    let instances = beats.liveness.instances(now, &Filter::default());
    let mut groups: BTreeMap<(&str, &str), [usize; 3]> = BTreeMap::new();
    for i in &instances {
        let g = groups
            .entry((&i.enabler_id, &i.enabler_version))
            .or_default();
        g[match i.state {
            Beat::Alive => 0,
            Beat::Late => 1,
            Beat::Dead => 2,
        }] += 1;
    }
    out.push_str("<h2>By enabler and version</h2>");
    if groups.is_empty() {
        out.push_str("<p class=\"muted\">no sender yet</p>");
    } else {
        out.push_str(
            "<table id=\"liveness-groups\"><tr><th>enabler</th><th>version</th>\
             <th>alive</th><th>late</th><th>dead</th></tr>",
        );
        for ((enabler, version), [alive, late, dead]) in groups.iter().take(MAX_GROUPS) {
            let _ = write!(
                out,
                "<tr><td class=\"enabler\">{}</td><td class=\"version\">{}</td>\
                 <td class=\"n ok\">{alive}</td><td class=\"n warn\">{late}</td>\
                 <td class=\"n bad\">{dead}</td></tr>",
                esc_cut(enabler),
                esc_cut(version)
            );
        }
        out.push_str("</table>");
        more(out, groups.len(), MAX_GROUPS);
        out.push_str(
            "<h2>Instances</h2><table id=\"liveness\"><tr><th>enabler</th><th>version</th>\
             <th>id</th><th>state</th><th>last beat</th><th>beats</th><th>source</th></tr>",
        );
        for i in instances.iter().take(MAX_INSTANCES) {
            let class = match i.state {
                Beat::Alive => "ok",
                Beat::Late => "warn",
                Beat::Dead => "bad",
            };
            let _ = write!(
                out,
                "<tr><td class=\"enabler\">{}</td><td class=\"version\">{}</td><td>{}</td>\
                 <td class=\"{class}\">{}</td><td class=\"n\">{:.0} s ago</td>\
                 <td class=\"n\">{}</td><td>{}</td></tr>",
                esc_cut(&i.enabler_id),
                esc_cut(&i.enabler_version),
                esc_cut(&i.id),
                i.state.label(),
                i.age_seconds,
                i.beats,
                esc_cut(i.source.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table>");
        more(out, instances.len(), MAX_INSTANCES);
    }
    out.push_str("</section>");
}

/// Every family whose name starts with `prefix` (the checks' or probes' counters), as
/// (labels, value) rows (the error and drop families' non-zero rows only); nothing when the
/// stage does not run.
pub fn families(out: &mut String, samples: &Samples, title: &str, prefix: &str) {
    let mut names: Vec<&str> = Vec::new();
    for s in &samples.0 {
        if s.name.starts_with(prefix) && !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    if names.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<section id=\"{title}\"><h2>{}</h2>",
        esc(&title[..1].to_uppercase()) + &esc(&title[1..])
    );
    for name in names {
        let _ = write!(
            out,
            "<table class=\"kv\"><tr><th colspan=\"2\">{}</th></tr>",
            esc(name.trim_start_matches("statsgate_"))
        );
        // Error and drop families are mostly zeros (a row per group and reason): only the
        // non-zero rows are worth a line.
        let sparse = name.contains("errors") || name.contains("dropped");
        let mut shown = 0;
        for s in samples.family(name) {
            if sparse && s.value.parse::<f64>().is_ok_and(|v| v == 0.0) {
                continue;
            }
            shown += 1;
            let caption: Vec<String> = s.labels.iter().map(|(_, v)| v.clone()).collect();
            row(out, samples, &caption.join(" · "), name, &s.labels_raw);
        }
        if shown == 0 {
            out.push_str("<tr><td class=\"muted\" colspan=\"2\">none</td></tr>");
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

pub fn charts(out: &mut String, s: &AdminState, now: u64) {
    out.push_str(
        "<section id=\"charts\" class=\"wide\"><h2>Last hour (by-minute means, min–max band)</h2>\
         <div class=\"charts\">",
    );
    let history = s.telemetry.history.get();
    if history.is_none() {
        out.push_str("<p class=\"muted\">history.enabled is off: no charts</p>");
    }
    for (name, caption, always) in CHARTS {
        let points = history.map(|h| h.minutes(name, &[])).unwrap_or_default();
        if history.is_none() || (!always && points.is_empty()) {
            continue;
        }
        let _ = write!(
            out,
            "<figure data-chart=\"{name}\"><figcaption>{} <span class=\"muted\">({name})</span></figcaption>{}</figure>",
            esc(caption),
            super::chart::svg(&points, now / 1000)
        );
    }
    out.push_str("</div></section>");
}

#[cfg(test)]
mod tests {
    use crate::heartbeat::{Beat, Heartbeats, Liveness, LivenessSettings};
    use std::sync::Arc;
    use std::time::Duration;

    /// A page over a liveness table filled directly (past ingest's validation, which
    /// already refuses `<`): escaping must not depend on it.
    fn page_with_senders(enablers: &[(&str, &str)], per_enabler: usize) -> String {
        let liveness = Liveness::new(LivenessSettings {
            expected_interval: Duration::from_secs(60),
            expire_after: Duration::from_secs(600),
            max_senders: 10_000,
        });
        let now = 1_800_000_000_000;
        for (enabler, version) in enablers {
            for i in 0..per_enabler {
                let beat = Beat {
                    id: format!("{enabler}-{i}"),
                    enabler_id: (*enabler).to_owned(),
                    enabler_version: (*version).to_owned(),
                    timestamp_ms: None,
                };
                liveness.record(&beat, None, now).expect("room");
            }
        }
        let beats = Heartbeats::new(
            liveness,
            Arc::new(crate::passthrough::Passthrough::new(1 << 20)),
            Duration::from_secs(300),
            false,
        );
        let state = super::AdminState {
            telemetry: Arc::new(crate::telemetry::Telemetry::new(1)),
            heartbeats: Some(Arc::new(beats)),
            flush_interval: Duration::from_secs(10),
        };
        super::super::status::render(&state, "n0nce", now)
    }

    #[test]
    fn sender_values_are_escaped_wherever_they_appear() {
        let evil = "<script>document.title='x'</script>";
        let page = page_with_senders(&[(evil, "<img src=x onerror=alert(1)>")], 1);
        assert!(!page.contains("<script>document"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;document.title=&#39;x&#39;&lt;/script&gt;"));
        assert_eq!(page.matches("<script").count(), 1, "only the page's own");
    }

    #[test]
    fn the_liveness_tables_are_cut_and_the_page_bounded() {
        let long = "e".repeat(255);
        let enablers: Vec<(String, String)> = (0..40)
            .map(|i| (format!("{long}{i}"), format!("{long}v")))
            .collect();
        let refs: Vec<(&str, &str)> = enablers
            .iter()
            .map(|(e, v)| (e.as_str(), v.as_str()))
            .collect();
        let page = page_with_senders(&refs, 25);
        // 40 groups × 25 instances: 30 groups and 50 instances shown.
        assert!(page.contains("… and 10 more"), "groups");
        assert!(page.contains("… and 950 more"), "instances");
        assert_eq!(page.matches("<td class=\"enabler\">").count(), 30 + 50);
        assert!(page.len() < 96 * 1024, "{} bytes", page.len());
    }
}
