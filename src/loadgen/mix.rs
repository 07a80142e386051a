//! The generator's traffic: a fixed pool of datagrams built once from the configured mix,
//! and the exact totals each series receives when the pool is sent some number of times.

use std::fmt::Write as _;

/// Statsd types the generator can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Type {
    #[value(name = "c")]
    Counter,
    #[value(name = "g")]
    Gauge,
    #[value(name = "ms")]
    Timer,
    #[value(name = "h")]
    Histogram,
    #[value(name = "d")]
    Distribution,
    #[value(name = "s")]
    Set,
}

impl Type {
    fn code(self) -> &'static str {
        match self {
            Type::Counter => "c",
            Type::Gauge => "g",
            Type::Timer => "ms",
            Type::Histogram => "h",
            Type::Distribution => "d",
            Type::Set => "s",
        }
    }

    /// Types whose flushed totals `--verify` checks exactly (the sum, or the sample count).
    fn verifiable(self) -> bool {
        !matches!(self, Type::Gauge | Type::Set)
    }
}

/// Where a line carries its dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Dialect {
    /// `name:1|c`, no dimensions.
    Plain,
    /// `name:1|c|#k:v,k2:v2`
    Dogstatsd,
    /// `name:1|c|#{'k': 'v'}` (the monasca-statsd client)
    Monasca,
    /// `name,k=v:1|c`
    Influx,
    /// `name;k=v:1|c`
    Graphite,
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Mix {
    pub prefix: String,
    pub types: Vec<Type>,
    pub dialects: Vec<Dialect>,
    /// Dimensions per line (not for `plain`).
    pub dimensions: usize,
    /// Distinct series; line `j` of the pool belongs to series `j % series`.
    pub series: usize,
    pub lines_per_datagram: usize,
}

/// Largest pool built, in lines; beyond it the pool is a prefix of one full cycle.
const MAX_POOL_LINES: usize = 2_000_000;

/// The datagrams to send in a cycle, and what each contributes to the verified series.
#[derive(Debug)]
pub struct Pool {
    pub datagrams: Vec<Vec<u8>>,
    /// Per datagram, the verified series (index into `names`) and the amount each line adds.
    contributions: Vec<Vec<(u32, f64)>>,
    /// Flushed name of each verified series: the counter's name or the timer's `name.count`.
    pub names: Vec<String>,
    /// Lines per datagram, as built (the last datagram of a cycle may be shorter).
    pub lines: Vec<u32>,
}

impl Mix {
    fn series_type(&self, s: usize) -> Type {
        self.types[s % self.types.len()]
    }

    fn series_dialect(&self, s: usize) -> Dialect {
        self.dialects[(s / self.types.len()) % self.dialects.len()]
    }

    /// The flushed metric name of series `s`.
    fn name(&self, s: usize) -> String {
        format!("{}.{}.{s}", self.prefix, self.series_type(s).code())
    }

    /// Line `j` of the pool (`seq` varies the values of gauges, timers and sets).
    pub fn line(&self, s: usize, seq: usize, out: &mut String) {
        let t = self.series_type(s);
        let dialect = self.series_dialect(s);
        let dims: Vec<(String, String)> = (0..self.dimensions)
            .map(|d| (format!("dim{d}"), format!("v{}", (s + d) % 10)))
            .collect();
        let value = match t {
            Type::Counter => "1".to_owned(),
            Type::Gauge => (seq % 100).to_string(),
            Type::Timer | Type::Histogram | Type::Distribution => (seq * 7 % 1000).to_string(),
            Type::Set => format!("u{}", seq % 50),
        };
        let name = self.name(s);
        let joined = |kv: &str, sep: &str| {
            dims.iter()
                .map(|(k, v)| format!("{k}{kv}{v}"))
                .collect::<Vec<_>>()
                .join(sep)
        };
        // Writing to a String cannot fail.
        let _ = match dialect {
            _ if dims.is_empty() => write!(out, "{name}:{value}|{}", t.code()),
            Dialect::Plain => write!(out, "{name}:{value}|{}", t.code()),
            Dialect::Dogstatsd => write!(out, "{name}:{value}|{}|#{}", t.code(), joined(":", ",")),
            Dialect::Monasca => write!(
                out,
                "{name}:{value}|{}|#{{{}}}",
                t.code(),
                dims.iter()
                    .map(|(k, v)| format!("'{k}': '{v}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Dialect::Influx => write!(out, "{name},{}:{value}|{}", joined("=", ","), t.code()),
            Dialect::Graphite => write!(out, "{name};{}:{value}|{}", joined("=", ";"), t.code()),
        };
    }

    /// Builds the pool: whole cycles over the series, cut into datagrams.
    pub fn pool(&self) -> Pool {
        let per = self.lines_per_datagram.max(1);
        let series = self.series.max(1);
        // Enough lines that the pool ends on both a cycle and a datagram boundary.
        let total = lcm(series, per).min(MAX_POOL_LINES.max(series));
        let verified: Vec<Option<u32>> = {
            let mut next = 0u32;
            (0..series)
                .map(|s| {
                    self.series_type(s).verifiable().then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect()
        };
        let names = (0..series)
            .filter(|&s| verified[s].is_some())
            .map(|s| match self.series_type(s) {
                Type::Counter => self.name(s),
                _ => format!("{}.count", self.name(s)),
            })
            .collect();
        let mut pool = Pool {
            datagrams: Vec::new(),
            contributions: Vec::new(),
            names,
            lines: Vec::new(),
        };
        let mut text = String::new();
        let mut j = 0;
        while j < total {
            text.clear();
            let mut contrib = Vec::new();
            let end = (j + per).min(total);
            for k in j..end {
                if k > j {
                    text.push('\n');
                }
                let s = k % series;
                self.line(s, k, &mut text);
                if let Some(v) = verified[s] {
                    contrib.push((v, 1.0));
                }
            }
            pool.datagrams.push(text.clone().into_bytes());
            pool.contributions.push(contrib);
            pool.lines.push((end - j) as u32);
            j = end;
        }
        pool
    }
}

impl Pool {
    /// Lines in one pass over the pool.
    pub fn cycle_lines(&self) -> u64 {
        self.lines.iter().map(|&l| u64::from(l)).sum()
    }

    /// What each verified series totals when `sent` datagrams were sent from the start of
    /// the pool, wrapping around.
    pub fn expected(&self, sent: u64) -> Vec<f64> {
        let mut totals = vec![0.0; self.names.len()];
        let n = self.datagrams.len() as u64;
        if n == 0 {
            return totals;
        }
        let (cycles, rest) = (sent / n, (sent % n) as usize);
        for (i, contrib) in self.contributions.iter().enumerate() {
            let times = cycles + u64::from(i < rest);
            for &(s, v) in contrib {
                totals[s as usize] += v * times as f64;
            }
        }
        totals
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Kind, Limits, lines, parse_line};

    fn mix(types: Vec<Type>, dialects: Vec<Dialect>, dims: usize) -> Mix {
        Mix {
            prefix: "bench".into(),
            types,
            dialects,
            dimensions: dims,
            series: 12,
            lines_per_datagram: 5,
        }
    }

    #[test]
    fn every_dialect_and_type_parses_with_its_dimensions() {
        let all_types = vec![
            Type::Counter,
            Type::Gauge,
            Type::Timer,
            Type::Histogram,
            Type::Distribution,
            Type::Set,
        ];
        let all_dialects = vec![
            Dialect::Plain,
            Dialect::Dogstatsd,
            Dialect::Monasca,
            Dialect::Influx,
            Dialect::Graphite,
        ];
        let m = Mix {
            series: 60,
            ..mix(all_types, all_dialects, 2)
        };
        let pool = m.pool();
        let mut kinds = std::collections::HashSet::new();
        let mut dims_seen = std::collections::HashSet::new();
        for d in &pool.datagrams {
            for line in lines(d) {
                let parsed = parse_line(line, &Limits::default())
                    .unwrap_or_else(|e| panic!("{}: {e:?}", String::from_utf8_lossy(line)));
                kinds.insert(parsed.kind);
                let mut n = 0;
                parsed.dims.for_each(|_, _| n += 1);
                dims_seen.insert(n);
            }
        }
        assert_eq!(kinds.len(), 6, "{kinds:?}");
        assert!(kinds.contains(&Kind::Set));
        assert_eq!(dims_seen, [0, 2].into_iter().collect(), "plain has none");
    }

    #[test]
    fn the_pool_cycles_over_every_series_in_whole_datagrams() {
        let m = mix(vec![Type::Counter], vec![Dialect::Plain], 0);
        let pool = m.pool();
        // lcm(12, 5) = 60 lines in 12 datagrams of 5.
        assert_eq!((pool.datagrams.len(), pool.cycle_lines()), (12, 60));
        assert!(pool.lines.iter().all(|&l| l == 5));
        let first = String::from_utf8(pool.datagrams[0].clone()).unwrap();
        assert_eq!(
            first,
            "bench.c.0:1|c\nbench.c.1:1|c\nbench.c.2:1|c\nbench.c.3:1|c\nbench.c.4:1|c"
        );
        // A whole cycle gives every series 5; three datagrams more add to series 0..15 % 12.
        let e = pool.expected(12 + 3);
        assert_eq!(e.len(), 12);
        assert_eq!(e.iter().sum::<f64>(), 75.0);
        assert_eq!((e[0], e[2], e[3], e[11]), (7.0, 7.0, 6.0, 6.0));
    }

    #[test]
    fn only_counters_and_timers_are_verified() {
        let m = mix(
            vec![Type::Counter, Type::Gauge, Type::Timer, Type::Set],
            vec![Dialect::Dogstatsd],
            1,
        );
        let pool = m.pool();
        assert_eq!(
            pool.names[..2],
            ["bench.c.0".to_owned(), "bench.ms.2.count".to_owned()]
        );
        assert_eq!(pool.names.len(), 6);
        assert_eq!(pool.expected(pool.datagrams.len() as u64), vec![5.0; 6]);
    }
}
