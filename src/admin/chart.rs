//! Small time charts as inline SVG: one series' by-minute points of the last hour (the mean
//! as a line, min–max as a band), drawn from [`crate::history::History::minutes`].
//!
//! Owns: the drawing (scales, path data, axis labels). Must never: emit script, style
//! attributes or external references, or draw more points than the hour holds (60, plus
//! one partial minute): the SVG's size is bounded whatever the history holds.

use crate::history::Point;
use std::fmt::Write;

const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 90.0;
/// Room for the y labels on the left and the time labels below.
const LEFT: f64 = 34.0;
const BOTTOM: f64 = 14.0;
const SPAN_SEC: u64 = 3600;
/// At most this many points are drawn (the last hour's minutes, and a partial one).
pub const MAX_POINTS: usize = 61;

/// The chart of `points` (oldest first) for the hour ending at `now_sec`; "no data yet" when
/// none fall in it.
pub fn svg(points: &[Point], now_sec: u64) -> String {
    let start = now_sec.saturating_sub(SPAN_SEC);
    let first = points.partition_point(|p| p.end_sec <= start);
    let shown = &points[first..];
    let shown = &shown[shown.len().saturating_sub(MAX_POINTS)..];
    let mut out = format!(
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\">\
         <path class=\"axis\" d=\"M{LEFT} 0V{y0}H{WIDTH}\"/>",
        y0 = HEIGHT - BOTTOM
    );
    if shown.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no data yet</text></svg>",
            (LEFT + WIDTH) / 2.0,
            (HEIGHT - BOTTOM) / 2.0
        );
        return out;
    }
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let lo = shown
        .iter()
        .map(|p| finite(p.min))
        .fold(f64::INFINITY, f64::min)
        .min(0.0);
    let mut hi = shown
        .iter()
        .map(|p| finite(p.max))
        .fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        hi = lo + 1.0;
    }
    let x = |sec: u64| {
        let t = sec.saturating_sub(start).min(SPAN_SEC) as f64 / SPAN_SEC as f64;
        LEFT + t * (WIDTH - LEFT)
    };
    let y = |v: f64| {
        let t = (finite(v) - lo) / (hi - lo);
        (HEIGHT - BOTTOM) * (1.0 - t.clamp(0.0, 1.0))
    };
    // Band: along the maxima, back along the minima.
    let mut band = String::new();
    for (i, p) in shown.iter().enumerate() {
        let mid = p.start_sec / 2 + p.end_sec / 2;
        let _ = write!(
            band,
            "{}{:.1} {:.1}",
            if i == 0 { 'M' } else { 'L' },
            x(mid),
            y(p.max)
        );
    }
    for p in shown.iter().rev() {
        let mid = p.start_sec / 2 + p.end_sec / 2;
        let _ = write!(band, "L{:.1} {:.1}", x(mid), y(p.min));
    }
    let mut line = String::new();
    if let [p] = shown {
        // One point (the first minute): a segment across its minute, or nothing would show.
        let _ = write!(
            line,
            "M{:.1} {y:.1}L{:.1} {y:.1}",
            x(p.start_sec),
            x(p.end_sec),
            y = y(p.avg)
        );
    }
    for (i, p) in shown.iter().enumerate().filter(|_| shown.len() > 1) {
        let mid = p.start_sec / 2 + p.end_sec / 2;
        let _ = write!(
            line,
            "{}{:.1} {:.1}",
            if i == 0 { 'M' } else { 'L' },
            x(mid),
            y(p.avg)
        );
    }
    let _ = write!(
        out,
        "<path class=\"band\" d=\"{band}Z\"/><path class=\"line\" d=\"{line}\"/>\
         <text x=\"{lx}\" y=\"10\" text-anchor=\"end\">{hi}</text>\
         <text x=\"{lx}\" y=\"{ly}\" text-anchor=\"end\">{lo}</text>\
         <text x=\"{LEFT}\" y=\"{ty}\">-60 min</text>\
         <text x=\"{WIDTH}\" y=\"{ty}\" text-anchor=\"end\">now</text></svg>",
        lx = LEFT - 3.0,
        ly = HEIGHT - BOTTOM,
        ty = HEIGHT - 2.0,
        hi = short(hi),
        lo = short(lo),
    );
    out
}

/// A number in at most about five characters, for an axis label.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(start_sec: u64, avg: f64) -> Point {
        Point {
            start_sec,
            end_sec: start_sec + 60,
            samples: 6,
            avg,
            min: avg - 1.0,
            max: avg + 1.0,
        }
    }

    #[test]
    fn empty_history_says_so() {
        let s = svg(&[], 1_800_000_000);
        assert!(s.contains("no data yet"), "{s}");
        assert!(!s.contains("class=\"line\""));
    }

    #[test]
    fn draws_the_last_hour_only_with_bounded_points() {
        let now: u64 = 30_000_000 * 60;
        let points: Vec<Point> = (0..500)
            .map(|i| point(now - 60 * (500 - i), i as f64))
            .collect();
        let s = svg(&points, now);
        let line = s
            .split("class=\"line\" d=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        assert_eq!(line.matches(['M', 'L']).count(), 60, "{line}");
        assert!(s.contains(">now</text>"));
        // The highest value shown is the last point's max.
        assert!(s.contains(">500</text>"), "{s}");
        let old: Vec<Point> = vec![point(now - 7200, 1.0)];
        assert!(svg(&old, now).contains("no data yet"));
    }

    #[test]
    fn a_single_point_is_a_visible_segment() {
        let now = 1_800_000_030;
        let s = svg(&[point(now - 30, 5.0)], now);
        let line = s
            .split("class=\"line\" d=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        assert_eq!(line.matches('L').count(), 1, "{line}");
    }

    #[test]
    fn flat_and_odd_values_stay_on_the_canvas() {
        let now = 1_800_000_020;
        let mut p = point(now - 100, 0.0);
        p.min = 0.0;
        p.max = 0.0;
        let mut nan = point(now - 40, f64::NAN);
        nan.min = f64::NEG_INFINITY;
        let s = svg(&[p, nan], now);
        assert!(!s.contains("NaN") && !s.contains("inf"), "{s}");
        assert!(short(12_345.0) == "12k" && short(2.5e6) == "2.5M" && short(0.5) == "0.50");
    }
}
