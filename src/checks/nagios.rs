//! `kind: nagios` (monasca-agent `nagios_wrapper`, `reference/probes.md` §7.6): runs a
//! Nagios-convention plugin and reports its exit code (0 OK, 1 WARNING, 2 CRITICAL,
//! 3 UNKNOWN) as the metric, its first output line as value_meta `detail`, and its perfdata
//! as gauges `<metric>.<label>`.
//!
//! Owns: starting the plugin (no shell unless asked, cleared environment, stdin from
//! /dev/null, its own process group), reading its standard output through a bound, parsing
//! the plugin guidelines' output format, and killing the plugin's whole process group when a
//! run ends or is cut. Must never: buffer more output than `max_output`, leave a process of
//! the plugin's group behind, block the checks' runtime, or put the plugin's arguments or
//! environment (they may hold passwords) in a log or value_meta.

use super::{BoxFuture, Check, Context, Report, Sample};
use crate::config::NagiosCheck;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Most perfdata gauges sent per run; further items are skipped (and counted in the debug
/// log), so a plugin cannot multiply the series a host sends.
pub const MAX_PERFDATA: usize = 64;

/// Nagios' UNKNOWN: what a plugin that cannot say, cannot start, or overran reports.
const UNKNOWN: f64 = 3.0;

/// How long the rest of the output is read after the plugin exited and its group was
/// killed. Only a process that left the group (`setsid`) can still hold the pipe then.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// The size of one read from the plugin's pipe.
const CHUNK: usize = 32 * 1024;

pub struct NagiosProbe {
    /// The program as configured (`/bin/sh` with `shell: true`), for messages.
    argv0: String,
    /// The program to run when it does not resolve on `path` at run time: absolute when it
    /// names a path, so that it means what validation checked.
    program: PathBuf,
    args: Vec<String>,
    path: String,
    env: BTreeMap<String, crate::secret::Secret>,
    workdir: PathBuf,
    max_output: usize,
    metric: String,
    observer: String,
    target: String,
    check: String,
}

impl NagiosProbe {
    pub fn new(c: &NagiosCheck, name: &str, ctx: &Context) -> anyhow::Result<Self> {
        let (argv0, args) = if c.shell {
            (
                "/bin/sh".to_owned(),
                vec!["-c".to_owned(), c.command.concat()],
            )
        } else {
            let Some((first, rest)) = c.command.split_first() else {
                anyhow::bail!("command is empty");
            };
            (first.clone(), rest.to_vec())
        };
        let mut program = PathBuf::from(&argv0);
        // A relative path like `./check_x` is checked against the gateway's directory at
        // start-up; run that same file, not one under `workdir`.
        if argv0.contains('/') && program.is_relative() {
            program = std::env::current_dir()?.join(program);
        }
        let path = c
            .env
            .get("PATH")
            .map(|p| p.expose().to_owned())
            .unwrap_or_else(|| crate::config::NAGIOS_PATH.to_owned());
        Ok(NagiosProbe {
            argv0,
            program,
            args,
            path,
            env: c.env.clone(),
            workdir: PathBuf::from(&c.workdir),
            max_output: usize::try_from(c.max_output.bytes()).unwrap_or(usize::MAX),
            metric: if c.metric_name.is_empty() {
                name.to_owned()
            } else {
                c.metric_name.clone()
            },
            observer: ctx.hostname.clone(),
            target: if c.host.is_empty() {
                ctx.hostname.clone()
            } else {
                c.host.clone()
            },
            check: name.to_owned(),
        })
    }

    fn sample(&self, name: impl Into<String>, value: f64) -> Sample {
        Sample::new(name, value)
            .dim("observer_host", &self.observer)
            .last_dim("target_host", &self.target)
    }

    fn unknown(&self, error: &str) -> Sample {
        self.sample(&self.metric, UNKNOWN).meta("error", error)
    }

    async fn run_once(&self) -> Report {
        // Resolved each run, so a plugin installed or replaced later is found; one that no
        // longer resolves is still tried, for the system's own error text.
        let program = if self.argv0.contains('/') {
            self.program.clone()
        } else {
            crate::config::executable(&self.argv0, Some(&self.path))
                .unwrap_or_else(|_| self.program.clone())
        };
        let mut command = tokio::process::Command::new(&program);
        command
            .args(&self.args)
            .env_clear()
            .env("PATH", &self.path)
            .envs(self.env.iter().map(|(k, v)| (k, v.expose())))
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Nagios reads standard output only; a plugin's stderr is noise to it.
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                let why = format!("{} is missing or unreadable: {e}", self.argv0);
                tracing::warn!(check = %self.check, "nagios plugin did not start: {why}");
                return Report::failed(vec![self.unknown(&why)]);
            }
        };
        let mut group = Group {
            pgid: child.id(),
            child,
        };
        let mut stdout = group.child.stdout.take();
        let mut output = Output::new(self.max_output);
        let mut chunk = vec![0u8; CHUNK];
        let status = loop {
            tokio::select! {
                status = group.child.wait() => break status,
                n = read_some(&mut stdout, &mut chunk), if stdout.is_some() => match n {
                    Ok(0) | Err(_) => stdout = None,
                    Ok(n) => output.push(&chunk[..n]),
                },
            }
        };
        // The leader is reaped: what it left running in its group goes now, which also
        // closes the pipe ends those processes held.
        group.kill_rest();
        if let Some(mut s) = stdout {
            let drain = async {
                while let Ok(n @ 1..) = s.read(&mut chunk).await {
                    output.push(&chunk[..n]);
                }
            };
            let _ = tokio::time::timeout(DRAIN_GRACE, drain).await;
        }
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                return Report::failed(vec![
                    self.unknown(&format!("waiting for {} failed: {e}", self.argv0)),
                ]);
            }
        };
        if output.discarded > 0 {
            tracing::debug!(check = %self.check, kept = output.kept.len(), discarded = output.discarded, "nagios plugin output beyond max_output discarded");
        }
        let Some(code) = status.code() else {
            let why = match status.signal() {
                Some(sig) => format!("killed by signal {sig}"),
                None => "ended without an exit code".to_owned(),
            };
            return Report::ok(vec![self.unknown(&why)]);
        };
        let parsed = parse_output(&output.kept, output.discarded > 0);
        let main = if (0..=3).contains(&code) {
            let s = self.sample(&self.metric, f64::from(code));
            if parsed.detail.is_empty() {
                s
            } else {
                s.meta("detail", &parsed.detail)
            }
        } else {
            self.unknown(&format!("exit code {code}"))
        };
        let mut samples = vec![main];
        let mut seen = BTreeSet::new();
        let mut skipped = parsed.skipped;
        for (label, value) in parsed.perfdata {
            let name = format!("{}.{}", self.metric, sanitize(&label));
            let fits = samples.len() <= MAX_PERFDATA && crate::validate::name(&name).is_ok();
            if fits && seen.insert(name.clone()) {
                samples.push(self.sample(name, value));
            } else {
                skipped += 1;
            }
        }
        if skipped > 0 {
            tracing::debug!(check = %self.check, skipped, "nagios perfdata items skipped (unparsable, duplicate, invalid name, or over the limit)");
        }
        Report::ok(samples)
    }
}

impl Check for NagiosProbe {
    fn run(&mut self) -> BoxFuture<'_, Report> {
        Box::pin(self.run_once())
    }

    fn timed_out(&mut self, timeout: Duration) -> Vec<Sample> {
        vec![self.unknown(&format!("timed out after {} s", timeout.as_secs_f64()))]
    }
}

/// The running plugin. Dropping it (the schedule cut the run) kills its whole process
/// group while the leader is still unreaped, so the group id cannot name anyone else;
/// `kill_on_drop` then has tokio reap the leader.
struct Group {
    child: tokio::process::Child,
    /// `None` once the group was killed after the leader was reaped.
    pgid: Option<u32>,
}

impl Group {
    /// Kills every process left in the group. Called right after the leader is reaped: its
    /// id stays allocated while any member lives, and Linux hands out ids cyclically, so
    /// with no member left the id cannot have been reused in those microseconds.
    fn kill_rest(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = crate::sys::kill_process_group(pgid);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill_rest();
    }
}

async fn read_some(
    stdout: &mut Option<tokio::process::ChildStdout>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match stdout {
        Some(s) => s.read(buf).await,
        None => Ok(0),
    }
}

/// The plugin's output: the first `max` bytes kept, the rest only counted.
struct Output {
    kept: Vec<u8>,
    max: usize,
    discarded: u64,
}

impl Output {
    fn new(max: usize) -> Self {
        Output {
            kept: Vec::new(),
            max,
            discarded: 0,
        }
    }
    fn push(&mut self, bytes: &[u8]) {
        let room = self.max.saturating_sub(self.kept.len()).min(bytes.len());
        self.kept.extend_from_slice(&bytes[..room]);
        self.discarded += (bytes.len() - room) as u64;
    }
}

/// What a plugin printed, as the plugin guidelines define it.
#[derive(Debug, Default, PartialEq)]
struct Parsed {
    /// The first line before its first `|`, trimmed.
    detail: String,
    /// `(label, value)` in the order printed, labels unquoted and unsanitized.
    perfdata: Vec<(String, f64)>,
    /// Perfdata items that did not parse.
    skipped: usize,
}

/// `TEXT | PERFDATA` on the first line, then long text lines until one holding a `|`, after
/// which every line is perfdata. With `cut` (the output went beyond `max_output`), the last
/// line may be incomplete and is not read for perfdata.
fn parse_output(out: &[u8], cut: bool) -> Parsed {
    let text = String::from_utf8_lossy(out);
    let mut lines: Vec<&str> = text.split('\n').collect();
    // A first line cut mid-way may end in half a number.
    let first_complete = !cut || lines.len() > 1;
    let mut parsed = Parsed::default();
    let first = lines.first().copied().unwrap_or("");
    let (detail, perf) = match first.split_once('|') {
        Some((d, p)) => (d, Some(p)),
        None => (first, None),
    };
    parsed.detail = detail.trim().to_owned();
    if cut {
        lines.pop();
    }
    let mut perf_lines: Vec<&str> = Vec::new();
    if let Some(p) = perf.filter(|_| first_complete) {
        perf_lines.push(p);
    }
    let mut in_perf = false;
    for line in lines.iter().skip(1) {
        if in_perf {
            perf_lines.push(line);
        } else if let Some((_, p)) = line.split_once('|') {
            perf_lines.push(p);
            in_perf = true;
        }
    }
    for p in perf_lines {
        perf_items(p, &mut parsed);
    }
    parsed
}

/// Space-separated `'label'=value[UOM];[warn];[crit];[min];[max]` items.
fn perf_items(s: &str, parsed: &mut Parsed) {
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let (label, after) = if let Some(quoted) = rest.strip_prefix('\'') {
            let mut label = String::new();
            let mut chars = quoted.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                        label.push('\'');
                        chars.next();
                        continue;
                    }
                    end = Some(i + 1);
                    break;
                }
                label.push(c);
            }
            let Some(end) = end else {
                // An unterminated quote swallows the rest of the line.
                parsed.skipped += 1;
                return;
            };
            (label, &quoted[end..])
        } else {
            let end = rest
                .find(|c: char| c == '=' || c.is_whitespace())
                .unwrap_or(rest.len());
            (rest[..end].to_owned(), &rest[end..])
        };
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let (item, next) = after.split_at(end);
        rest = next.trim_start();
        let value = item
            .strip_prefix('=')
            .and_then(|f| f.split(';').next())
            .and_then(perf_value);
        match value {
            Some(v) if !label.is_empty() => parsed.perfdata.push((label, v)),
            _ => parsed.skipped += 1,
        }
    }
}

/// The number of `value[UOM]`, as printed (the unit is dropped, not applied); `U` (the
/// guidelines' "cannot be determined") and anything not a finite number are refused.
fn perf_value(field: &str) -> Option<f64> {
    let number = field.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
    if number.is_empty() {
        return None;
    }
    number.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A perfdata label as a Monasca name part: the characters names refuse, and any
/// whitespace or control character, become `_`.
fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || "<>={},\"\\;&()".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perf(s: &str) -> Parsed {
        parse_output(s.as_bytes(), false)
    }

    #[test]
    fn first_line_is_detail_and_perfdata() {
        let p = perf("OK - load fine|load1=0.5;1;2;0; 'disk free'=42%;;;0;100\n");
        assert_eq!(p.detail, "OK - load fine");
        assert_eq!(
            p.perfdata,
            vec![("load1".to_owned(), 0.5), ("disk free".to_owned(), 42.0)]
        );
        assert_eq!(p.skipped, 0);
    }

    #[test]
    fn long_output_carries_more_perfdata_after_a_bar() {
        let p = perf(
            "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n\
             / 15272 MB (77%);\n\
             /boot 68 MB (69%); | /boot=68MB;88;93;0;98\n\
             /home=69357MB;253404;253409;0;253414\n",
        );
        assert_eq!(p.detail, "DISK OK - free space: / 3326 MB (56%);");
        let labels: Vec<_> = p.perfdata.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["/", "/boot", "/home"]);
        assert_eq!(p.perfdata[2].1, 69357.0);
    }

    #[test]
    fn long_text_without_a_bar_is_not_perfdata() {
        let p = perf("WARNING - 2 jobs\njob1=late\njob2=late\n");
        assert_eq!(p.detail, "WARNING - 2 jobs");
        assert!(p.perfdata.is_empty());
    }

    #[test]
    fn quotes_units_and_refusals() {
        let p = perf(
            "X | 'it''s'=1s 'a b=c'=2.5e3ms rta=U;1;2 bad nolabel= =5 \
             x=1,5 y=-3c z=inf w=10KB 'open=1 v=2",
        );
        assert_eq!(
            p.perfdata,
            vec![
                ("it's".to_owned(), 1.0),
                ("a b=c".to_owned(), 2500.0),
                ("y".to_owned(), -3.0),
                ("w".to_owned(), 10.0),
            ]
        );
        // rta=U, bad, nolabel=, =5, x=1,5, z=inf, and 'open=1 v=2 (an unterminated quote
        // takes the rest of the line).
        assert_eq!(p.skipped, 7);
        let p = perf("X | x=1,5 z=inf");
        assert_eq!(p.skipped, 2);
    }

    #[test]
    fn detail_is_trimmed_and_empty_output_gives_nothing() {
        assert_eq!(perf("CRITICAL - down   |a=1\r\n").detail, "CRITICAL - down");
        assert_eq!(perf(""), Parsed::default());
        assert_eq!(perf("| a=1").detail, "");
    }

    #[test]
    fn a_cut_output_does_not_read_its_partial_last_line() {
        let p = parse_output(b"OK | a=1 b=2.", true);
        assert_eq!(p.detail, "OK");
        assert!(p.perfdata.is_empty());
        let p = parse_output(b"OK | a=1\nmore | b=2\nc=3", true);
        assert_eq!(
            p.perfdata,
            vec![("a".to_owned(), 1.0), ("b".to_owned(), 2.0)]
        );
    }

    #[test]
    fn labels_become_valid_name_parts() {
        assert_eq!(sanitize("disk free"), "disk_free");
        assert_eq!(sanitize("a<b>c={d},\"e\\f;g&h(i)"), "a_b_c__d___e_f_g_h_i_");
        assert!(crate::validate::name(&format!("nagios.{}", sanitize("x\t(y) z"))).is_ok());
    }

    #[test]
    fn output_keeps_only_its_bound() {
        let mut o = Output::new(10);
        o.push(b"12345678");
        o.push(b"abcdef");
        assert_eq!(o.kept, b"12345678ab");
        assert_eq!(o.discarded, 4);
    }
}
