//! Loadgen: `statsgate bench`, a statsd load generator that measures what its target did.
//!
//! Owns: building a traffic mix, sending it with `sendmmsg` (flat out or paced), and the
//! report: offered vs counted lines, loss, kernel drops, and the target's CPU time per line
//! and memory (from `/proc`, for any statsd server on this machine), plus `--verify`, an
//! exact check of flushed counter totals. Must never: be linked into the gateway's data
//! path, or report a number it did not measure (missing sources show as `null`).

pub mod mix;
pub mod target;

use crate::listen::mmsg::SendBatch;
use anyhow::Context;
use mix::{Dialect, Mix, Pool, Type};
use serde::Serialize;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use target::{ProcSample, Scrape};

/// `statsgate bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The statsd server's UDP address. Default: `statsd.listen` of the configuration
    /// (`--config` and `STATSGATE_*`), a wildcard address read as loopback.
    #[arg(long)]
    pub target: Option<SocketAddr>,
    /// Its admin address serving `/metrics` (statsgate's counter names); "" for none.
    /// Default: `admin.listen` of the configuration, read the same way.
    #[arg(long)]
    pub admin: Option<String>,
    /// The server's process id for CPU and memory; default: whoever holds the UDP port.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Lines to send, rounded up to whole datagrams (ignored with --duration).
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: u64,
    /// Send for this long instead of a line count, e.g. 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Target rate in lines per second; 0 = as fast as one core can send.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    #[arg(long, default_value_t = 20)]
    pub lines_per_datagram: usize,
    /// Distinct series (cardinality).
    #[arg(long, default_value_t = 1000)]
    pub series: usize,
    /// Metric types, cycled over the series.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "c")]
    pub types: Vec<Type>,
    /// Dimension dialects, cycled over the series.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "plain")]
    pub dialects: Vec<Dialect>,
    /// Dimensions per line (dialects other than plain).
    #[arg(long, default_value_t = 0)]
    pub dimensions: usize,
    /// Metric name prefix; --verify adds a run tag so runs never mix.
    #[arg(long, default_value = "bench")]
    pub prefix: String,
    /// Datagrams per sendmmsg call.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// After sending, wait this long for the target's line count to stop moving.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub settle: Duration,
    /// Check the flushed counter sums and timer counts exactly (needs --sink-output).
    #[arg(long, requires = "sink_output")]
    pub verify: bool,
    /// The target's console-sink output (its stdout redirected to a file), for --verify.
    #[arg(long)]
    pub sink_output: Option<PathBuf>,
    /// Give up waiting for the verifying flush after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub verify_timeout: Duration,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What a run measured. Target-side numbers are `None` where their source was missing.
#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub pid: Option<u32>,
    pub series: usize,
    pub lines_per_datagram: usize,
    pub offered_lines: u64,
    pub offered_datagrams: u64,
    pub send_errors: u64,
    pub send_seconds: f64,
    pub offered_lines_per_second: f64,
    pub accepted_lines: Option<u64>,
    pub lost_lines: Option<i64>,
    pub loss_ratio: Option<f64>,
    /// Kernel receive-buffer drops on the target port during the run, in datagrams.
    pub kernel_drops: u64,
    pub server_cpu_seconds: Option<f64>,
    /// Server CPU time / lines it counted, in microseconds.
    pub cpu_per_line_us: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub server_hwm_kib: Option<u64>,
    pub verify: Option<Verify>,
}

#[derive(Debug, Serialize)]
pub struct Verify {
    pub ok: bool,
    pub series_checked: usize,
    pub mismatched: usize,
    /// Up to five `name: expected vs flushed`.
    pub examples: Vec<String>,
}

impl Options {
    /// Takes `--target` and `--admin`, where not given, from the configuration a gateway
    /// started with the same `--config` and environment would listen on.
    pub fn with_config(mut self, config: &crate::config::Config) -> Self {
        if self.target.is_none() {
            self.target = config.statsd.listen.parse().ok().map(reachable);
        }
        if self.admin.is_none() {
            self.admin = Some(match config.admin.listen.parse::<SocketAddr>() {
                Ok(a) => reachable(a).to_string(),
                Err(_) => String::new(),
            });
        }
        self
    }

    fn target(&self) -> SocketAddr {
        self.target
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8125)))
    }
}

/// A wildcard listen address is reached on the loopback of its family.
pub fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// Runs the benchmark and returns its report.
pub fn run(opts: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(!opts.types.is_empty(), "--types: at least one");
    anyhow::ensure!(!opts.dialects.is_empty(), "--dialects: at least one");
    anyhow::ensure!(opts.series > 0, "--series: at least 1");
    let admin: Option<SocketAddr> = match opts.admin.as_deref().unwrap_or("127.0.0.1:8126") {
        "" => None,
        a => Some(
            a.parse()
                .map_err(|e| anyhow::anyhow!("--admin {a:?}: {e}"))?,
        ),
    };
    let prefix = if opts.verify {
        format!("{}.r{}", opts.prefix, fastrand::u32(..))
    } else {
        opts.prefix.clone()
    };
    let mix = Mix {
        prefix: prefix.clone(),
        types: opts.types.clone(),
        dialects: opts.dialects.clone(),
        dimensions: opts.dimensions,
        series: opts.series,
        lines_per_datagram: opts.lines_per_datagram.max(1),
    };
    let pool = mix.pool();
    let pid = opts.pid.or_else(|| target::find_pid(opts.target().port()));
    let port = opts.target().port();

    let scrape_before = admin.map(scrape).transpose()?;
    let proc_before = pid.and_then(target::proc_sample);
    let drops_before = target::udp_drops(port);

    let sent = send(opts, &pool)?;

    let scrape_after = match (admin, scrape_before) {
        (Some(a), Some(before)) => Some(settle(a, before, sent.lines, opts.settle)?),
        _ => {
            std::thread::sleep(opts.settle);
            None
        }
    };
    let proc_after = pid.and_then(target::proc_sample);
    let drops = target::udp_drops(port).saturating_sub(drops_before);

    let accepted = scrape_before
        .zip(scrape_after)
        .map(|(b, a)| a.lines.saturating_sub(b.lines));
    let cpu = proc_before
        .zip(proc_after)
        .map(|(b, a): (ProcSample, ProcSample)| a.cpu_s - b.cpu_s);
    let verify = match (&opts.sink_output, admin, scrape_after) {
        (Some(path), Some(a), Some(after)) if opts.verify => Some(verify(
            a,
            after,
            path,
            &prefix,
            &pool,
            sent.datagrams,
            opts,
        )?),
        (Some(_), _, _) if opts.verify => {
            anyhow::bail!("--verify needs the target's /metrics (--admin) to see its flushes")
        }
        _ => None,
    };
    Ok(Report {
        target: opts.target().to_string(),
        pid,
        series: opts.series,
        lines_per_datagram: mix.lines_per_datagram,
        offered_lines: sent.lines,
        offered_datagrams: sent.datagrams,
        send_errors: sent.errors,
        send_seconds: sent.seconds,
        offered_lines_per_second: sent.lines as f64 / sent.seconds.max(1e-9),
        accepted_lines: accepted,
        lost_lines: accepted.map(|a| sent.lines as i64 - a as i64),
        loss_ratio: accepted
            .map(|a| (sent.lines as f64 - a as f64).max(0.0) / (sent.lines as f64).max(1.0)),
        kernel_drops: drops,
        server_cpu_seconds: cpu,
        cpu_per_line_us: cpu
            .zip(accepted)
            .filter(|&(_, a)| a > 0)
            .map(|(c, a)| c * 1e6 / a as f64),
        server_rss_kib: proc_after.map(|p| p.rss_kib),
        server_hwm_kib: proc_after.map(|p| p.hwm_kib),
        verify,
    })
}

struct Sent {
    lines: u64,
    datagrams: u64,
    errors: u64,
    seconds: f64,
}

/// Sends from the pool, wrapping around, until the line count or the duration is reached.
fn send(opts: &Options, pool: &Pool) -> anyhow::Result<Sent> {
    let bind: SocketAddr = if opts.target().is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = UdpSocket::bind(bind)?;
    let target = opts.target();
    socket
        .connect(target)
        .with_context(|| format!("--target {target}"))?;
    let progress = progress_bar(opts);
    let batch = opts.batch.clamp(1, 1024);
    let mut sender = SendBatch::new(batch);
    let mut refs: Vec<&[u8]> = Vec::with_capacity(batch);
    let n = pool.datagrams.len();
    let (mut next, mut lines, mut datagrams, mut errors) = (0usize, 0u64, 0u64, 0u64);
    let started = Instant::now();
    let deadline = opts.duration.map(|d| started + d);
    let mut calls = 0u64;
    loop {
        let done = match deadline {
            Some(d) => calls.is_multiple_of(16) && Instant::now() >= d,
            None => lines >= opts.lines,
        };
        if done {
            break;
        }
        if opts.rate > 0 {
            // Paced: sleep until the schedule allows what was already sent.
            let due = started + Duration::from_secs_f64(lines as f64 / opts.rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        refs.clear();
        let mut batch_lines = 0u64;
        while refs.len() < batch && (deadline.is_some() || lines + batch_lines < opts.lines) {
            let i = (next + refs.len()) % n;
            refs.push(&pool.datagrams[i]);
            batch_lines += u64::from(pool.lines[i]);
        }
        calls += 1;
        match sender.send(&socket, &refs) {
            Ok(k) => {
                for j in 0..k {
                    lines += u64::from(pool.lines[(next + j) % n]);
                }
                datagrams += k as u64;
                next = (next + k) % n;
            }
            // ENOBUFS, or ECONNREFUSED from an earlier datagram nobody received: count, go on.
            Err(_) => {
                errors += 1;
                std::thread::yield_now();
            }
        }
        if calls.is_multiple_of(64) {
            progress.set_position(if deadline.is_some() {
                started.elapsed().as_millis() as u64
            } else {
                lines
            });
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    Ok(Sent {
        lines,
        datagrams,
        errors,
        seconds,
    })
}

fn progress_bar(opts: &Options) -> indicatif::ProgressBar {
    let (len, template) = match opts.duration {
        Some(d) => (
            d.as_millis() as u64,
            "{spinner} sending {elapsed_precise} [{bar:40}] {percent}%",
        ),
        None => (
            opts.lines,
            "{spinner} sending [{bar:40}] {human_pos}/{human_len} lines {per_sec} eta {eta}",
        ),
    };
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The target's counters, an error naming the admin address it could not read.
fn scrape(admin: SocketAddr) -> anyhow::Result<Scrape> {
    target::scrape(admin).with_context(|| format!("--admin {admin}: cannot read /metrics"))
}

/// Polls `/metrics` until the target has counted every offered line or its count has not
/// moved for `quiet`.
fn settle(
    admin: SocketAddr,
    before: Scrape,
    offered: u64,
    quiet: Duration,
) -> anyhow::Result<Scrape> {
    let mut last = scrape(admin)?;
    let mut still_since = Instant::now();
    let hard_stop = Instant::now() + quiet * 10 + Duration::from_secs(10);
    while last.lines.saturating_sub(before.lines) < offered
        && still_since.elapsed() < quiet
        && Instant::now() < hard_stop
    {
        std::thread::sleep(Duration::from_millis(50));
        let now = scrape(admin)?;
        if now.lines != last.lines {
            still_since = Instant::now();
        }
        last = now;
    }
    Ok(last)
}

/// Waits for a flush after everything was counted, then compares the flushed totals.
fn verify(
    admin: SocketAddr,
    counted: Scrape,
    path: &std::path::Path,
    prefix: &str,
    pool: &Pool,
    datagrams: u64,
    opts: &Options,
) -> anyhow::Result<Verify> {
    let expected = pool.expected(datagrams);
    let deadline = Instant::now() + opts.verify_timeout;
    let wanted = format!("{prefix}.");
    loop {
        let flushed_since = scrape(admin)?.flushes > counted.flushes;
        if flushed_since {
            let output = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--sink-output {}: {e}", path.display()))?;
            let totals = target::flushed_totals(&output, &wanted);
            let mut examples = Vec::new();
            let mut mismatched = 0;
            for (name, want) in pool.names.iter().zip(&expected) {
                let got = totals.get(name).copied().unwrap_or(0.0);
                if got != *want {
                    mismatched += 1;
                    if examples.len() < 5 {
                        examples.push(format!("{name}: expected {want} flushed {got}"));
                    }
                }
            }
            // The flush counter may move just before the sink's write lands: retry briefly.
            if mismatched == 0 || Instant::now() >= deadline {
                return Ok(Verify {
                    ok: mismatched == 0,
                    series_checked: expected.len(),
                    mismatched,
                    examples,
                });
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no flush from the target within --verify-timeout"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The human-readable report.
pub fn render(r: &Report) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "n/a".to_owned());
    let mut s = format!(
        "target {} (pid {})\n\
         offered   {} lines in {} datagrams, {:.3} s, {:.0} lines/s ({} series, {} lines/datagram, {} send errors)\n\
         accepted  {} lines; lost {} ({}); kernel drops {} datagrams\n\
         server    CPU {} s, {} µs/line; RSS {} KiB (peak {} KiB)\n",
        r.target,
        opt(r.pid.map(|p| p.to_string())),
        r.offered_lines,
        r.offered_datagrams,
        r.send_seconds,
        r.offered_lines_per_second,
        r.series,
        r.lines_per_datagram,
        r.send_errors,
        opt(r.accepted_lines.map(|v| v.to_string())),
        opt(r.lost_lines.map(|v| v.to_string())),
        opt(r.loss_ratio.map(|v| format!("{:.4}%", v * 100.0))),
        r.kernel_drops,
        opt(r.server_cpu_seconds.map(|v| format!("{v:.2}"))),
        opt(r.cpu_per_line_us.map(|v| format!("{v:.4}"))),
        opt(r.server_rss_kib.map(|v| v.to_string())),
        opt(r.server_hwm_kib.map(|v| v.to_string())),
    );
    if let Some(v) = &r.verify {
        s.push_str(&format!(
            "verify    {}: {} series checked, {} mismatched {}\n",
            if v.ok { "OK" } else { "FAILED" },
            v.series_checked,
            v.mismatched,
            v.examples.join("; ")
        ));
    }
    s
}
