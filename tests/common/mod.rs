//! Harness: runs the real `statsgate` binary on loopback with ephemeral ports, reads the
//! console sink from its stdout and its counters from the admin port.
#![allow(dead_code)]

pub mod fake_openstack;
pub mod pki;
pub mod reset_proxy;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

pub struct Gateway {
    child: Child,
    pub udp: SocketAddr,
    pub admin: SocketAddr,
    /// The local-clients HTTP port (`http.listen`).
    pub http: SocketAddr,
    flushes: Receiver<Vec<Value>>,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// The file given with `--config`: a test rewrites it and sends SIGHUP to reload.
    pub config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts the gateway with `yaml` appended to a config that picks free ports.
pub fn start(yaml: &str) -> Gateway {
    start_with(yaml, &[], None)
}

/// [`start`] with extra environment variables (set last, so they win over the harness's).
pub fn start_env(yaml: &str, env: &[(&str, &str)]) -> Gateway {
    start_with(yaml, env, None)
}

/// [`start`], with the child's open-files limit (soft and hard RLIMIT_NOFILE) set to
/// `nofile` when given, as `ulimit -n` would before `exec`.
pub fn start_with_nofile(yaml: &str, nofile: Option<u64>) -> Gateway {
    start_with(yaml, &[], nofile)
}

/// [`start`] with the listen addresses of `yaml` itself (no `STATSGATE_*__LISTEN` from the
/// harness, which would win over the file): a test that moves a listener on reload.
pub fn start_own_ports(yaml: &str) -> Gateway {
    spawn(yaml, &[], None, false)
}

fn start_with(yaml: &str, env: &[(&str, &str)], nofile: Option<u64>) -> Gateway {
    spawn(yaml, env, nofile, true)
}

fn spawn(yaml: &str, env: &[(&str, &str)], nofile: Option<u64>, env_ports: bool) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("statsgate.yaml");
    // Ports and hostname come from the environment, so a test's YAML may have any section.
    let config = yaml.to_owned();
    std::fs::write(&path, config).expect("write config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_statsgate"));
    if let Some(n) = nofile {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: n as libc::rlim_t,
                    rlim_max: n as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    if env_ports {
        command
            .env("STATSGATE_STATSD__LISTEN", "127.0.0.1:0")
            .env("STATSGATE_ADMIN__LISTEN", "127.0.0.1:0")
            .env("STATSGATE_HTTP__LISTEN", "127.0.0.1:0");
    }
    // `RUST_LOG` is `info` unless the test gives it; given empty, it is unset, so that
    // `log.level` decides.
    let rust_log = env
        .iter()
        .find(|(k, _)| *k == "RUST_LOG")
        .map_or("info", |(_, v)| *v);
    if rust_log.is_empty() {
        command.env_remove("RUST_LOG");
    } else {
        command.env("RUST_LOG", rust_log);
    }
    let mut child = command
        .arg("--config")
        .arg(&path)
        .env("STATSGATE_STATSD__READERS", "2")
        .env("STATSGATE_AGGREGATE__HOSTNAME", "test-host")
        // Host probes would add ~45 metrics to every flush a test counts; tests/probes.rs
        // turns them back on.
        .env("STATSGATE_PROBES__ENABLED", "false")
        .envs(env.iter().copied().filter(|(k, _)| *k != "RUST_LOG"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn statsgate");

    let (tx, flushes) = channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let parsed: Vec<Value> = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout is not a JSON array ({e}): {line}"));
            if tx.send(parsed).is_err() {
                break;
            }
        }
    });

    let stderr_text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (addr_tx, addr_rx) = channel();
    let stderr = child.stderr.take().expect("stderr");
    let sink = stderr_text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("statsgate listening") {
                let _ = addr_tx.send((
                    field(&line, "udp="),
                    field(&line, "admin="),
                    field(&line, "http="),
                ));
            }
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let (udp, admin, http) = addr_rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("statsgate did not start: {}", stderr_text.lock().unwrap()));
    Gateway {
        child,
        udp,
        admin,
        http,
        flushes,
        stderr: stderr_text,
        config: path,
        _dir: dir,
    }
}

/// `statsgate bench --json` against `udp` (statsd) and `admin` with `args`: its report;
/// fails the test when bench fails.
pub fn bench(udp: SocketAddr, admin: SocketAddr, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .arg("bench")
        .args(["--target", &udp.to_string()])
        .args(["--admin", &admin.to_string()])
        .arg("--json")
        .args(args)
        .output()
        .expect("run statsgate bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Sends `raw` and reads the whole answer: (status, body).
pub fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(raw.as_bytes()).expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A POST as `curl -X POST -d BODY URL` sends it (form content type, fixed length).
pub fn curl_post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    request(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nContent-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn field(line: &str, key: &str) -> SocketAddr {
    let start = line.find(key).expect(key) + key.len();
    let rest = &line[start..];
    let end = rest.find(' ').unwrap_or(rest.len());
    rest[..end].parse().expect("address")
}

impl Gateway {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn sender(&self) -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
        s.connect(self.udp).expect("connect");
        s
    }

    /// GET on the admin port.
    pub fn get(&self, path: &str) -> (u16, String) {
        request(
            self.admin,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
    }

    /// A counter from `/metrics`, summed over its label sets matching `labels`.
    pub fn counter(&self, name: &str, labels: &str) -> u64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    pub fn lines_counted(&self) -> u64 {
        self.counter("statsgate_lines_accepted_total", "")
            + self.counter("statsgate_lines_rejected_total", "")
    }

    /// Polls until `f` is true or `timeout` passes.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !f(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; stderr:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The next flush printed, if one comes within `timeout`.
    pub fn next_flush(&self, timeout: Duration) -> Option<Vec<Value>> {
        self.flushes.recv_timeout(timeout).ok()
    }

    /// Every metric flushed until `done` holds for what was collected; fails after `limit`.
    pub fn flushed_until(&self, limit: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut all = Vec::new();
        while !done(&all) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "not seen within {limit:?}; got {}\nstderr:\n{}",
                serde_json::to_string_pretty(&all).unwrap(),
                self.stderr.lock().unwrap()
            );
            if let Some(f) = self.next_flush(left) {
                all.extend(f);
            }
        }
        all
    }

    /// Every metric of the flushes within `within`.
    pub fn flushed_within(&self, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut all = Vec::new();
        while let Some(f) = self.next_flush(deadline.saturating_duration_since(Instant::now())) {
            all.extend(f);
        }
        all
    }

    /// The first flushed metric for which `found` holds; fails after `within`, naming `what`.
    pub fn first_flushed(
        &self,
        what: &str,
        within: Duration,
        found: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what} within {within:?}; stderr:\n{}",
                self.stderr.lock().unwrap()
            );
            if let Some(flush) = self.next_flush(left)
                && let Some(m) = flush.into_iter().find(|m| found(m))
            {
                return m;
            }
        }
    }

    /// The stream listener `key` (`tcp`, `tls`) from the start-up line.
    pub fn stream_addr(&self, key: &str) -> SocketAddr {
        let mut text = String::new();
        // The harness sees the line a moment before its stderr copy holds it.
        self.wait_for("the start-up line", Duration::from_secs(15), |g| {
            text = g.stderr.lock().unwrap().clone();
            text.contains("statsgate listening")
        });
        let line = text
            .lines()
            .find(|l| l.contains("statsgate listening"))
            .expect("start-up line");
        let tag = format!("{key}=");
        line.split(' ')
            .flat_map(|w| w.strip_prefix("streams=").into_iter().chain([w]))
            .find_map(|w| w.strip_prefix(tag.as_str()))
            .unwrap_or_else(|| panic!("no {key}= in {line}"))
            .parse()
            .expect("address")
    }

    /// SIGHUP: the gateway reloads its configuration.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Rewrites the configuration file with `yaml` and sends SIGHUP; waits until the
    /// reload counter moved and returns the last reload's (outcome, message) from `/healthz`.
    pub fn reload_with(&self, yaml: &str) -> (String, String) {
        let before = self.counter("statsgate_reloads_total", "");
        std::fs::write(&self.config, yaml).expect("rewrite config");
        self.hangup();
        self.wait_for("the reload", Duration::from_secs(30), |g| {
            g.counter("statsgate_reloads_total", "") > before
        });
        let (_, body) = self.get("/healthz");
        let health: Value = serde_json::from_str(&body).expect("healthz JSON");
        let last = &health["last_reload"];
        (
            last["outcome"].as_str().unwrap_or_default().to_owned(),
            last["message"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// SIGTERM, then everything printed until exit, and the exit status.
    pub fn stop(mut self) -> (Vec<Vec<Value>>, ExitStatus) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        // Generous: a final flush of 100k series to a real Monasca takes seconds.
        let deadline = Instant::now() + Duration::from_secs(90);
        let exit = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "statsgate did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut all = Vec::new();
        while let Ok(f) = self.flushes.recv_timeout(Duration::from_secs(2)) {
            all.push(f);
        }
        (all, exit)
    }

    /// SIGKILL: no final flush, no shutdown path; what survives is what was on disk.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Only the process this harness started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds a metric by name and a subset of dimensions.
pub fn find<'a>(metrics: &'a [Value], name: &str, dims: &[(&str, &str)]) -> Option<&'a Value> {
    metrics
        .iter()
        .find(|m| m["name"] == name && dims.iter().all(|(k, v)| m["dimensions"][*k] == *v))
}

pub fn value(metrics: &[Value], name: &str, dims: &[(&str, &str)]) -> f64 {
    find(metrics, name, dims).unwrap_or_else(|| {
        panic!(
            "no metric {name} {dims:?} in {}",
            serde_json::to_string_pretty(metrics).unwrap()
        )
    })["value"]
        .as_f64()
        .expect("numeric value")
}

/// A loopback TCP port that nothing listens on (bound, then released): a Monasca or admin
/// address that refuses connections.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local address").port()
}

/// The python of a virtualenv under `target/<venv>` in which `import` runs, created and
/// `pip install`ed with `requirement` on first use. `None` when Python or PyPI is unavailable.
pub fn venv_python(venv: &str, import: &str, requirement: &str) -> Option<std::path::PathBuf> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(venv);
    let py = venv.join("bin/python");
    let has = |py: &std::path::Path| {
        Command::new(py)
            .args(["-c", import])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if py.exists() && has(&py) {
        return Some(py);
    }
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    if !created {
        return None;
    }
    let _ = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", requirement])
        .status();
    has(&py).then_some(py)
}
