//! Parse: statsd lines in every dialect of DESIGN §3, as a pure function over bytes.
//!
//! Owns: splitting a datagram into lines, recognising heartbeat datagrams, and turning one
//! line into a borrowed [`Line`] or a [`Reject`] reason. Must never: panic, allocate, keep
//! state, or look at anything but its input (the aggregator decides what a line means).
//!
//! Grammar: `name[,k=v...|;k=v...]:value[:value...]|type[|@rate][|#tags][|T<secs>][|c:<id>]`,
//! plus `_sc|name|status|...` service checks and `_e{...}` events. Lenient where the DogStatsD
//! agent and gostatsd both are and nothing is lost: unknown `|x` fields, empty fields and an
//! empty `|#` are ignored, and empty packed values (`1::2`, `1:`) are skipped.

mod datagram;
mod dims;
mod number;
mod service_check;

pub use datagram::{is_heartbeat, lines};
pub use dims::{BARE_TAG_VALUE, Dims, TagBlock};
pub use number::parse as parse_number;

use crate::reason::Reject;
use crate::validate;

/// The statsd metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter,
    Gauge,
    Timer,
    Histogram,
    Distribution,
    Set,
    Rate,
    /// `pc`: the percent change between a series' last two values (Rainbow's DiffMetric).
    PercentChange,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Counter,
        Kind::Gauge,
        Kind::Timer,
        Kind::Histogram,
        Kind::Distribution,
        Kind::Set,
        Kind::Rate,
        Kind::PercentChange,
    ];

    /// The label on `statsgate_lines_accepted_total{type=...}`.
    pub const fn label(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Timer => "timer",
            Kind::Histogram => "histogram",
            Kind::Distribution => "distribution",
            Kind::Set => "set",
            Kind::Rate => "rate",
            Kind::PercentChange => "percent_change",
        }
    }

    fn from_code(code: &str) -> Result<Self, Reject> {
        Ok(match code {
            "c" => Kind::Counter,
            "g" => Kind::Gauge,
            "ms" => Kind::Timer,
            "h" => Kind::Histogram,
            "d" => Kind::Distribution,
            "s" => Kind::Set,
            "r" => Kind::Rate,
            "pc" => Kind::PercentChange,
            "" => return Err(Reject::MissingType),
            _ => return Err(Reject::UnknownType),
        })
    }

    /// Timers, histograms and distributions all aggregate as a timer.
    pub const fn is_timer(self) -> bool {
        matches!(self, Kind::Timer | Kind::Histogram | Kind::Distribution)
    }
}

/// One gauge sample: `+N`/`-N` move the current value, a plain number sets it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GaugeOp {
    Set(f64),
    Delta(f64),
}

/// The value field of a line, already validated for its type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Values<'a> {
    raw: &'a str,
    /// The first value, parsed once at validation (numeric kinds only).
    first: f64,
    /// The packed values after the first (`2:3` of `1:2:3`); empty for one value.
    rest: &'a str,
}

impl<'a> Values<'a> {
    /// The numeric samples (not for sets). Validated at parse, so only empty pieces
    /// (`1::2`) are skipped.
    #[inline]
    pub fn numbers(&self) -> impl Iterator<Item = f64> + 'a {
        let packed = (!self.rest.is_empty())
            .then(|| pieces(self.rest))
            .into_iter()
            .flatten();
        std::iter::once(self.first).chain(packed.map(|s| parse_number(s).unwrap_or(0.0)))
    }

    /// The gauge operations, in order.
    pub fn gauge_ops(&self) -> impl Iterator<Item = GaugeOp> + 'a {
        pieces(self.raw).map(|s| {
            let v = parse_number(s).unwrap_or(0.0);
            if s.starts_with(['+', '-']) {
                GaugeOp::Delta(v)
            } else {
                GaugeOp::Set(v)
            }
        })
    }

    /// A set's member: the whole value field (members may contain `:`, e.g. `user:42`).
    pub fn member(&self) -> &'a str {
        self.raw
    }

    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The value of a line with exactly one numeric value (not for sets).
    #[inline]
    pub fn single(&self) -> Option<f64> {
        self.rest.is_empty().then_some(self.first)
    }
}

/// The non-empty `:`-separated pieces of packed values: DogStatsD and gostatsd skip empty
/// ones (`1::2` is two values), and an empty piece has nothing to lose.
#[inline]
fn pieces(s: &str) -> Pieces<'_> {
    Pieces { rest: s }
}

/// [`pieces`]: one plain byte loop per piece (values are a few bytes: `str::split`'s
/// vectorised search costs more to set up than it saves).
struct Pieces<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        while !self.rest.is_empty() {
            let (piece, rest) = match find(self.rest.as_bytes(), b':') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, ""),
            };
            self.rest = rest;
            if !piece.is_empty() {
                return Some(piece);
            }
        }
        None
    }
}

/// One parsed statsd line, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line<'a> {
    pub name: &'a str,
    pub kind: Kind,
    pub values: Values<'a>,
    /// `@rate` in (0, 1]; 1 when absent.
    pub sample_rate: f64,
    pub dims: Dims<'a>,
    /// `|T` or the service check's `d:`, seconds since the epoch.
    pub timestamp: Option<u64>,
}

/// Parser limits, from `statsd.*`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_line: usize,
    pub max_dimensions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: 8192,
            max_dimensions: 32,
        }
    }
}

/// Parse one line (without its newline).
///
/// ```
/// use statsgate::parse::{Kind, Limits, parse_line};
/// let line = parse_line(b"page.views:1|c|@0.5|#service:web", &Limits::default()).unwrap();
/// assert_eq!((line.name, line.kind, line.sample_rate), ("page.views", Kind::Counter, 0.5));
/// let mut dims = Vec::new();
/// line.dims.for_each(|k, v| dims.push((k, v)));
/// assert_eq!(dims, [("service", "web")]);
/// ```
#[inline]
pub fn parse_line<'a>(line: &'a [u8], limits: &Limits) -> Result<Line<'a>, Reject> {
    if line.len() > limits.max_line {
        return Err(Reject::LineTooLong);
    }
    let line = std::str::from_utf8(line).map_err(|_| Reject::BadEncoding)?;
    parse_line_str(line, limits)
}

/// [`parse_line`] for a line already known to be UTF-8: a reader checks a whole datagram
/// at once, which costs far less than one check per short line.
#[inline]
pub fn parse_line_str<'a>(line: &'a str, limits: &Limits) -> Result<Line<'a>, Reject> {
    if line.len() > limits.max_line {
        return Err(Reject::LineTooLong);
    }
    if line.starts_with("_e{") {
        return Err(Reject::Event);
    }
    if let Some(rest) = line.strip_prefix("_sc|") {
        return service_check::parse(rest, limits);
    }

    let head = scan_head(line.as_bytes());
    let colon = head.colon.ok_or(Reject::MissingValue)?;
    let (name, dims) = split_name(&line[..colon], head)?;
    let rest = &line[colon + 1..];
    let bar = find(rest.as_bytes(), b'|').ok_or(Reject::MissingType)?;
    let raw_values = &rest[..bar];
    let mut fields = Fields {
        s: &rest[bar + 1..],
    };
    let kind = Kind::from_code(fields.next_plain())?;

    let mut sample_rate = 1.0;
    let mut dims = dims;
    let mut timestamp = None;
    while let Some(field) = fields.next()? {
        match field {
            Field::SampleRate(r) => sample_rate = parse_sample_rate(r)?,
            Field::Tags(tags) => {
                if dims.tags != TagBlock::None {
                    return Err(Reject::BadDimension);
                }
                dims.tags = tags;
            }
            Field::Timestamp(t) => {
                timestamp = Some(parse_timestamp(t).ok_or(Reject::BadTimestamp)?);
            }
            Field::Other => {}
        }
    }
    let values = validate_values(raw_values, kind)?;
    if !dims.is_empty() {
        dims.validate(limits.max_dimensions)?;
    }
    // Built once, in place: moving a `Line` around costs a memcpy per line.
    Ok(Line {
        name,
        kind,
        values,
        sample_rate,
        dims,
        timestamp,
    })
}

/// Statsd fields are short: a plain loop beats a vectorised search's set-up cost here.
#[inline]
fn find(haystack: &[u8], needle: u8) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// What one pass over the bytes before the first `:` found.
#[derive(Debug, Clone, Copy)]
struct Head {
    /// The first `:`, which ends the name (and its InfluxDB/Graphite tags).
    colon: Option<usize>,
    /// The first `,` or `;`: where name tags start.
    tag_start: Option<usize>,
    /// A character Monasca refuses in names, before `tag_start`.
    name_forbidden: bool,
}

/// Byte classes for [`scan_head`]: 0 = fine in a name.
const COLON: u8 = 1;
const TAG_SEPARATOR: u8 = 2;
const NAME_FORBIDDEN: u8 = 3;

static HEAD_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let forbidden = b"<>={}\"\\&() \x7f";
    let mut c = 0;
    while c < 0x20 {
        t[c] = NAME_FORBIDDEN;
        c += 1;
    }
    let mut i = 0;
    while i < forbidden.len() {
        t[forbidden[i] as usize] = NAME_FORBIDDEN;
        i += 1;
    }
    t[b':' as usize] = COLON;
    t[b',' as usize] = TAG_SEPARATOR;
    t[b';' as usize] = TAG_SEPARATOR;
    t
};

/// Finds the name's end, its tags and any forbidden character in a single pass: the name
/// is most of a typical line, so scanning it once instead of three times matters.
#[inline]
fn scan_head(bytes: &[u8]) -> Head {
    let mut head = Head {
        colon: None,
        tag_start: None,
        name_forbidden: false,
    };
    for (i, &b) in bytes.iter().enumerate() {
        match HEAD_CLASS[b as usize] {
            0 => {}
            COLON => {
                head.colon = Some(i);
                break;
            }
            TAG_SEPARATOR => {
                head.tag_start.get_or_insert(i);
            }
            _ => head.name_forbidden |= head.tag_start.is_none(),
        }
    }
    head
}

/// `name`, `name,k=v,...` (InfluxDB) or `name;k=v;...` (Graphite); `s` ends before the `:`.
fn split_name(s: &str, head: Head) -> Result<(&str, Dims<'_>), Reject> {
    let mut dims = Dims::default();
    let name = match head.tag_start {
        Some(i) => {
            dims.name_tags = &s[i + 1..];
            dims.name_tag_separator = s.as_bytes()[i];
            if dims.name_tags.is_empty() {
                return Err(Reject::BadDimension);
            }
            &s[..i]
        }
        None => s,
    };
    // Same rule as `validate::name`, whose table scan `scan_head` already did.
    if head.name_forbidden || name.is_empty() || !validate::within_max_chars(name) {
        return Err(Reject::BadName);
    }
    Ok((name, dims))
}

#[inline]
fn validate_values(raw: &str, kind: Kind) -> Result<Values<'_>, Reject> {
    if raw.is_empty() {
        return Err(Reject::BadValue);
    }
    if kind == Kind::Set {
        return Ok(Values {
            raw,
            first: 0.0,
            rest: "",
        });
    }
    // Empty pieces at either end (`1:`, `:1`) go here, so that `rest` is empty exactly when
    // there is one value; `::` alone has none and stays a bad value, as in DogStatsD.
    let raw = trim_colons(raw);
    let (head, rest) = match find(raw.as_bytes(), b':') {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => (raw, ""),
    };
    let first = parse_number(head)?;
    if kind.is_timer() && first < 0.0 {
        return Err(Reject::NegativeSample);
    }
    if !rest.is_empty() {
        // Packed values: validate every one now, so aggregation cannot meet a bad one.
        for piece in pieces(rest) {
            let v = parse_number(piece)?;
            if kind.is_timer() && v < 0.0 {
                return Err(Reject::NegativeSample);
            }
        }
    }
    Ok(Values { raw, first, rest })
}

/// `raw` without leading or trailing `:`; two byte checks when there are none.
#[inline]
fn trim_colons(raw: &str) -> &str {
    let b = raw.as_bytes();
    if b.first() == Some(&b':') || b.last() == Some(&b':') {
        raw.trim_matches(':')
    } else {
        raw
    }
}

/// The smallest sample rate accepted: a sample weighs at most a million, so weighted counts
/// and histogram counts cannot overflow (`|@1e-300` would weigh 1e300).
pub const MIN_SAMPLE_RATE: f64 = 1e-6;

fn parse_sample_rate(s: &str) -> Result<f64, Reject> {
    match s.parse::<f64>() {
        Ok(r) if (MIN_SAMPLE_RATE..=1.0).contains(&r) => Ok(r),
        Ok(r) if r > 0.0 && r < MIN_SAMPLE_RATE => Err(Reject::SampleRateTooSmall),
        _ => Err(Reject::BadSampleRate),
    }
}

/// Whole seconds since the epoch, 1..=9999999999 (to the year 2286).
fn parse_timestamp(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().filter(|&t| t > 0)
}

enum Field<'a> {
    SampleRate(&'a str),
    Tags(TagBlock<'a>),
    Timestamp(&'a str),
    Other,
}

/// The `|`-separated fields after the value; a Monasca dict may contain `|` inside quotes.
struct Fields<'a> {
    s: &'a str,
}

impl<'a> Fields<'a> {
    fn next_plain(&mut self) -> &'a str {
        let end = find(self.s.as_bytes(), b'|').unwrap_or(self.s.len());
        let field = &self.s[..end];
        self.s = self.s.get(end + 1..).unwrap_or("");
        field
    }

    fn next(&mut self) -> Result<Option<Field<'a>>, Reject> {
        while !self.s.is_empty() {
            if let Some(after) = self.s.strip_prefix('#').filter(|a| a.starts_with('{')) {
                let len = dims::dict_len(after).ok_or(Reject::BadDimension)?;
                let dict = &after[..len];
                let rest = &after[len..];
                self.s = match rest.strip_prefix('|') {
                    Some(r) => r,
                    None if rest.trim().is_empty() => "",
                    None => return Err(Reject::BadDimension),
                };
                return Ok(Some(Field::Tags(TagBlock::MonascaDict(dict))));
            }
            let field = self.next_plain();
            // An empty field (`|c||#a:b`) or an empty `|#` carries nothing, as in DogStatsD
            // and gostatsd; skipped, `|#` does not take the line's one tag block.
            if field.is_empty() || field == "#" {
                continue;
            }
            // The prefixes are ASCII, so slicing after one byte is on a char boundary; a
            // field starting with anything else (even a multi-byte char) is just unknown.
            return Ok(Some(match field.as_bytes()[0] {
                b'@' => Field::SampleRate(&field[1..]),
                b'#' => Field::Tags(TagBlock::DogStatsd(&field[1..])),
                b'T' => Field::Timestamp(&field[1..]),
                _ => Field::Other,
            }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_lenient;
