//! A service manager's end of the notify protocol: a Unix datagram socket that records each
//! message with its arrival time, and a gateway started with nothing awaited but the
//! messages (the harness waits for its log line instead).

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One datagram: `KEY=VALUE` lines.
#[derive(Debug, Clone)]
pub struct Msg {
    pub at: Instant,
    pub fields: Vec<(String, String)>,
}

impl Msg {
    pub fn is(&self, key: &str, value: &str) -> bool {
        self.get(key) == Some(value)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Manager {
    path: String,
    msgs: Arc<Mutex<Vec<Msg>>>,
    started: Instant,
    _dir: tempfile::TempDir,
}

impl Manager {
    pub fn bind() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let weak = Arc::downgrade(&msgs);
        // Ends once the Manager is gone.
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Some(msgs) = weak.upgrade() {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                // A line that is not KEY=VALUE (or not UTF-8) is kept as MALFORMED, for the
                // tests to refuse: systemd would ignore it.
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let fields = text
                    .lines()
                    .map(|l| match l.split_once('=') {
                        Some((k, v)) if !k.is_empty() => (k.to_owned(), v.to_owned()),
                        _ => ("MALFORMED".to_owned(), l.to_owned()),
                    })
                    .collect();
                let msg = Msg {
                    at: Instant::now(),
                    fields,
                };
                msgs.lock().unwrap().push(msg);
            }
        });
        Manager {
            path: path.to_str().unwrap().to_owned(),
            msgs,
            started: Instant::now(),
            _dir: dir,
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The first message with `key=value` (written `KEY=VALUE`); fails after `limit`.
    pub fn wait_for(&self, gw: &Spawned, kv: &str, limit: Duration) -> Msg {
        let (key, value) = kv.split_once('=').unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(m) = self.msgs.lock().unwrap().iter().find(|m| m.is(key, value)) {
                return m.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {kv} within {limit:?}; messages:\n{}\nstderr:\n{}",
                self.transcript(),
                gw.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn times_of(&self, key: &str, value: &str) -> Vec<Instant> {
        let msgs = self.msgs.lock().unwrap();
        msgs.iter()
            .filter(|m| m.is(key, value))
            .map(|m| m.at)
            .collect()
    }

    /// Every message so far, once those in flight have had time to arrive.
    pub fn drain(&self) -> Vec<Msg> {
        std::thread::sleep(Duration::from_millis(300));
        self.msgs.lock().unwrap().clone()
    }

    /// The messages with their arrival times, for failure messages.
    pub fn transcript(&self) -> String {
        let msgs = self.msgs.lock().unwrap();
        msgs.iter()
            .map(|m| {
                let fields: Vec<_> = m.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "{:>8.3}s {}\n",
                    (m.at - self.started).as_secs_f64(),
                    fields.join(" ")
                )
            })
            .collect()
    }
}

/// The addresses READY=1's STATUS line names.
pub struct Listening {
    pub udp: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl Listening {
    pub fn parse(status: &str) -> Listening {
        let addr = |pattern: &str| -> SocketAddr {
            let re = regex::Regex::new(pattern).unwrap();
            let caps = re
                .captures(status)
                .unwrap_or_else(|| panic!("{pattern} not in STATUS={status}"));
            caps[1].parse().unwrap()
        };
        Listening {
            udp: addr(r"statsd udp (\S+?),"),
            http: addr(r", http (\S+?),"),
            admin: addr(r", admin (\S+?);"),
        }
    }
}

/// The real binary on ephemeral loopback ports, its console sink's flushes collected.
pub struct Spawned {
    child: Child,
    flushes: Receiver<Vec<Value>>,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

pub fn spawn(yaml: &str, env: &[(&str, &str)]) -> Spawned {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("statsgate.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .arg("--config")
        .arg(&config)
        // Whatever runs this test may itself be a systemd service.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env("RUST_LOG", "info")
        .env("STATSGATE_STATSD__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_STATSD__READERS", "2")
        .env("STATSGATE_ADMIN__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_HTTP__LISTEN", "127.0.0.1:0")
        .env("STATSGATE_AGGREGATE__HOSTNAME", "test-host")
        .env("STATSGATE_PROBES__ENABLED", "false")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn statsgate");
    let (tx, flushes) = channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let parsed: Vec<Value> = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout is not a JSON array ({e}): {line}"));
            if tx.send(parsed).is_err() {
                break;
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&stderr);
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    Spawned {
        child,
        flushes,
        stderr,
        _dir: dir,
    }
}

impl Spawned {
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The first flushed metric named `name`; fails after `limit`.
    pub fn first_flushed(&self, name: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {name} within {limit:?}:\n{}",
                self.stderr()
            );
            if let Ok(flush) = self.flushes.recv_timeout(left)
                && let Some(m) = flush.into_iter().find(|m| m["name"] == name)
            {
                return m;
            }
        }
    }

    /// SIGHUP (as `systemctl reload` sends it through `ExecReload`); when it went.
    pub fn sighup(&self) -> Instant {
        let sent = Instant::now();
        let sent_ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent_ok.success());
        sent
    }

    /// SIGTERM (as `systemctl stop` sends it): the exit status, and when the signal went.
    pub fn sigterm(mut self) -> (ExitStatus, Instant) {
        let sent = Instant::now();
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, sent);
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Only the process this test started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
