//! The `/metrics` text read back as samples, so that the status page shows the very figures
//! `/metrics` serves (one definition of each, in [`crate::telemetry`]'s collector).
//!
//! Owns: parsing the OpenMetrics text that [`crate::telemetry::render`] produces (sample
//! lines `name{labels} value`; `#` lines skipped). Must never: define a figure of its own,
//! or panic on a line it does not understand (it skips it).

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// The label text between the braces exactly as `/metrics` prints it ("" when none):
    /// the page's `data-labels` hook, which a test matches against `/metrics`.
    pub labels_raw: String,
    /// The labels, unescaped, in `/metrics` order.
    pub labels: Vec<(String, String)>,
    /// The value as printed.
    pub value: String,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of one scrape, in `/metrics` order.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    pub fn parse(text: &str) -> Samples {
        Samples(text.lines().filter_map(parse_line).collect())
    }

    /// The sample `name{labels_raw}`.
    pub fn get(&self, name: &str, labels_raw: &str) -> Option<&Sample> {
        self.0
            .iter()
            .find(|s| s.name == name && s.labels_raw == labels_raw)
    }

    /// Every sample of the family `name`.
    pub fn family<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| s.name == name)
    }

    /// The value of `name{labels_raw}` as a number (0 when absent).
    pub fn number(&self, name: &str, labels_raw: &str) -> f64 {
        self.get(name, labels_raw)
            .and_then(|s| s.value.parse().ok())
            .unwrap_or(0.0)
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let rest = &line[name_end..];
    let (labels_raw, labels, rest) = if let Some(inner) = rest.strip_prefix('{') {
        let close = closing_brace(inner)?;
        let raw = &inner[..close];
        (raw, parse_labels(raw)?, &inner[close + 1..])
    } else {
        ("", Vec::new(), rest)
    };
    // `value` or `value timestamp`: the page shows the value.
    let value = rest.trim_start().split(' ').next()?;
    if value.is_empty() {
        return None;
    }
    Some(Sample {
        name: name.to_owned(),
        labels_raw: labels_raw.to_owned(),
        labels,
        value: value.to_owned(),
    })
}

/// The index of the `}` that closes the label set, skipping quoted values.
fn closing_brace(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => quoted = !quoted,
            (false, _, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

/// `k="v",k2="v2"` with OpenMetrics escapes (`\\`, `\"`, `\n`) in the values.
fn parse_labels(raw: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim_start_matches(',').to_owned();
        let after = rest[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        out.push((key, value));
        rest = &after[end + 1..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn reads_plain_and_labelled_samples() {
        let s = Samples::parse(
            "# HELP x y\nstatsgate_flushes_total 3\nstatsgate_series 2.0\n\
             statsgate_lines_accepted_total{type=\"counter\"} 12\n# EOF\n",
        );
        assert_eq!(s.0.len(), 3);
        assert_eq!(s.get("statsgate_flushes_total", "").unwrap().value, "3");
        let a = s
            .get("statsgate_lines_accepted_total", "type=\"counter\"")
            .unwrap();
        assert_eq!(a.label("type"), Some("counter"));
        assert_eq!(s.number("statsgate_series", ""), 2.0);
        assert_eq!(s.number("absent", ""), 0.0);
    }

    #[test]
    fn label_values_keep_braces_commas_and_escapes() {
        let line = r#"statsgate_check_runs_total{check="a}b,c=\"d\"\\e",outcome="ok"} 7"#;
        let s = Samples::parse(line);
        let sample = &s.0[0];
        assert_eq!(sample.labels_raw, r#"check="a}b,c=\"d\"\\e",outcome="ok""#);
        assert_eq!(sample.label("check"), Some(r#"a}b,c="d"\e"#));
        assert_eq!(sample.label("outcome"), Some("ok"));
        assert_eq!(sample.value, "7");
    }

    #[test]
    fn skips_what_it_cannot_read() {
        let s = Samples::parse("broken{a=\"x\" 1\nnovalue \n{}\nok 1\n");
        assert_eq!(s.0.len(), 1, "{s:?}");
        assert_eq!(s.0[0].name, "ok");
    }

    #[test]
    fn reads_every_sample_the_collector_renders() {
        let t = Arc::new(crate::telemetry::Telemetry::new(2));
        t.readers[1].accept(crate::parse::Kind::Timer);
        let text = crate::telemetry::render(&t);
        let samples = Samples::parse(&text);
        let lines = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
        assert_eq!(samples.0.len(), lines);
        assert_eq!(
            samples.number("statsgate_lines_accepted_total", "type=\"timer\""),
            1.0
        );
    }
}
