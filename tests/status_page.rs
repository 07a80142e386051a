//! The status page (`GET /` on the admin port) in a real headless Chromium (Debian's
//! `chromium`): it renders with and without JavaScript, every figure it hooks to a `/metrics`
//! sample equals that sample at the same moment, the script refreshes it in place, values
//! senders control show as text, and a screenshot lands in `target/artifacts/`.
//!
//! Without chromium the tests are skipped loudly, except under CI (`CI` set), where they fail.

mod common;

use common::Gateway;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = "flush:\n  interval: 1s\n";
/// With the host probes every second: cpu.* and mem.* reach the history, so the charts draw.
const WITH_PROBES: &str = "flush:\n  interval: 1s\nprobes:\n  period: 1s\n";

/// The browser: the first of Debian's names found on `PATH`.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "chromium-headless-shell"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// The browser, or `None` (and a loud message) where the test must be skipped.
fn browser_or_skip(test: &str) -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but no chromium, chromium-browser or chromium-headless-shell is on PATH \
             (.ci/run installs Debian's chromium)"
        );
        // Straight to stderr: libtest captures eprintln! of a passing test.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! SKIPPED {test}: no chromium on PATH (apt-get install chromium) !!!!!!!!\n"
        );
    }
    found
}

/// Runs the browser headless on `url` with `args`; its stdout. Each run has its own profile
/// directory, so parallel tests do not share one, and is killed after 40 s.
fn run_browser(bin: &Path, args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "chromium {args:?} failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            // Only the browser this test started.
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within 40 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().expect("reader")
}

/// The DOM after the page's scripts ran, with time advanced so that its refresh fires.
fn dom_with_js(bin: &Path, url: &str) -> String {
    run_browser(bin, &["--virtual-time-budget=12000", "--dump-dom"], url)
}

/// The DOM of the page loaded with JavaScript off (`--blink-settings=scriptEnabled=false`).
/// `--dump-dom` serializes with a script, which that setting blocks, so the DOM is read over
/// the DevTools protocol (`--remote-debugging-pipe`: fd 3 in, fd 4 out, NUL-terminated JSON,
/// wired through FIFOs by `sh`), with the DOM domain, which runs no page script.
fn dom_without_js(bin: &Path, url: &str) -> String {
    use serde_json::json;
    use std::io::BufReader;
    let dir = tempfile::tempdir().expect("tempdir");
    let (to_browser, from_browser) = (dir.path().join("in"), dir.path().join("out"));
    for fifo in [&to_browser, &from_browser] {
        let ok = Command::new("mkfifo").arg(fifo).status().expect("mkfifo");
        assert!(ok.success());
    }
    let profile = dir.path().join("profile");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(
            "exec \"$0\" --headless --no-sandbox --disable-gpu --no-first-run \
             --blink-settings=scriptEnabled=false --remote-debugging-pipe \
             --user-data-dir=\"$1\" about:blank 3<\"$2\" 4>\"$3\"",
        )
        .arg(bin)
        .arg(&profile)
        .arg(&to_browser)
        .arg(&from_browser)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    // Same order as the shell opens them, or both would wait forever.
    let mut tx = std::fs::OpenOptions::new()
        .write(true)
        .open(&to_browser)
        .expect("open the browser's input");
    let mut rx = BufReader::new(std::fs::File::open(&from_browser).expect("open its output"));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let pid = child.id();
    // The watchdog: a browser that hangs is killed (only the one this test started).
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(40)).is_err() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    });
    let mut cdp = Cdp {
        tx: &mut tx,
        rx: &mut rx,
        id: 0,
    };
    let target = cdp.call("Target.createTarget", json!({"url": "about:blank"}), None);
    let attached = cdp.call(
        "Target.attachToTarget",
        json!({"targetId": target["targetId"], "flatten": true}),
        None,
    );
    let session = attached["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_owned();
    let s = Some(session.as_str());
    cdp.call("Page.enable", json!({}), s);
    cdp.call("Page.navigate", json!({"url": url}), s);
    cdp.event("Page.loadEventFired");
    let doc = cdp.call("DOM.getDocument", json!({"depth": 0}), s);
    let html = cdp.call(
        "DOM.getOuterHTML",
        json!({"nodeId": doc["root"]["nodeId"]}),
        s,
    );
    // Closing: the browser may exit before it answers.
    cdp.send("Browser.close", json!({}), None);
    let _ = child.wait();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    html["outerHTML"].as_str().expect("outerHTML").to_owned()
}

/// A DevTools protocol client over the pipe: commands by id, events skipped until asked for.
struct Cdp<'a> {
    tx: &'a mut std::fs::File,
    rx: &'a mut std::io::BufReader<std::fs::File>,
    id: u64,
}

impl Cdp<'_> {
    fn send(&mut self, method: &str, params: serde_json::Value, session: Option<&str>) -> u64 {
        use std::io::Write;
        self.id += 1;
        let mut msg = serde_json::json!({"id": self.id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = serde_json::json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.tx.write_all(&bytes).expect("write to the browser");
        self.id
    }

    fn read(&mut self) -> serde_json::Value {
        use std::io::BufRead;
        let mut buf = Vec::new();
        let n = self
            .rx
            .read_until(0, &mut buf)
            .expect("read from the browser");
        assert!(n > 0, "the browser closed its pipe");
        buf.pop();
        serde_json::from_slice(&buf).expect("DevTools JSON")
    }

    fn call(
        &mut self,
        method: &str,
        params: serde_json::Value,
        session: Option<&str>,
    ) -> serde_json::Value {
        let id = self.send(method, params, session);
        loop {
            let v = self.read();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn event(&mut self, method: &str) {
        while self.read()["method"] != method {}
    }
}

/// `/metrics` as `name{labels}` → value.
fn scrape(gw: &Gateway) -> BTreeMap<String, f64> {
    let (status, body) = gw.get("/metrics");
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("sample line");
            (key.to_owned(), value.parse::<f64>().expect("sample value"))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// One element of the dumped DOM: its tag, attributes and the text up to the next tag.
#[derive(Debug)]
struct Element {
    tag: String,
    attrs: BTreeMap<String, String>,
    text: String,
}

/// Chromium serializes the DOM with every attribute value double-quoted and `"`, `&`, `<`,
/// `>` escaped, so start tags are read by a small scanner.
fn elements(dom: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        if rest.starts_with('/') || rest.starts_with('!') {
            continue;
        }
        let Some(close) = rest.find('>') else { break };
        let inside = &rest[..close];
        let tag_end = inside
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(inside.len());
        let tag = inside[..tag_end].to_ascii_lowercase();
        let mut attrs = BTreeMap::new();
        let mut a = &inside[tag_end..];
        loop {
            a = a.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
            if a.is_empty() {
                break;
            }
            let name_end = a
                .find(|c: char| c == '=' || c.is_whitespace())
                .unwrap_or(a.len());
            let name = a[..name_end].to_ascii_lowercase();
            a = &a[name_end..];
            let value = if let Some(v) = a.strip_prefix("=\"") {
                let end = v.find('"').expect("closing quote");
                a = &v[end + 1..];
                unescape(&v[..end])
            } else {
                String::new()
            };
            attrs.insert(name, value);
        }
        rest = &rest[close + 1..];
        let text = unescape(&rest[..rest.find('<').unwrap_or(rest.len())]);
        out.push(Element { tag, attrs, text });
    }
    out
}

fn title(dom: &str) -> String {
    elements(dom)
        .into_iter()
        .find(|e| e.tag == "title")
        .map(|e| e.text)
        .unwrap_or_default()
}

/// Asserts the page's structure, and that every hooked figure equals its `/metrics` sample
/// in `before` and `after` (scrapes taken just before and after the browser's): exactly,
/// or between them for the counters marked volatile. Returns the figures checked.
fn assert_figures_match(
    dom: &str,
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    assert_eq!(title(dom), "statsgate status", "{dom}");
    let all = elements(dom);
    for id in [
        "ingest",
        "forward",
        "token",
        "series",
        "heartbeats",
        "charts",
    ] {
        assert!(
            all.iter()
                .any(|e| e.tag == "section" && e.attrs.get("id").is_some_and(|v| v == id)),
            "no section #{id}"
        );
    }
    let mut checked = BTreeMap::new();
    for e in all.iter().filter(|e| e.attrs.contains_key("data-metric")) {
        let name = &e.attrs["data-metric"];
        let labels = e.attrs.get("data-labels").map_or("", |s| s.as_str());
        let key = if labels.is_empty() {
            name.clone()
        } else {
            format!("{name}{{{labels}}}")
        };
        let shown: f64 = e
            .text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{key}: the page shows {:?}, not a number", e.text));
        let (b, a) = match (before.get(&key), after.get(&key)) {
            (Some(b), Some(a)) => (*b, *a),
            _ => panic!("the page shows {key}, which /metrics does not serve"),
        };
        if e.attrs.contains_key("data-volatile") {
            // Moves with time: a counter lies between the scrapes, a gauge (the last probe
            // or check run's duration) is only known to be one of its values.
            if name.ends_with("_total") {
                assert!(
                    b <= shown && shown <= a,
                    "{key}: page {shown}, /metrics {b} then {a}"
                );
            } else {
                assert!(shown.is_finite() && shown >= 0.0, "{key}: {shown}");
            }
        } else {
            assert_eq!(b, a, "{key} moved while the traffic was stopped");
            assert_eq!(shown, b, "{key}: the page shows {shown}, /metrics {b}");
        }
        checked.insert(key, shown);
    }
    checked
}

/// Sends a mix of statsd lines (some refused) and three senders' heartbeats, waits until
/// every line is counted and flushed twice (the series gauge settles), then sends nothing.
fn traffic(gw: &Gateway) -> u64 {
    let sender = gw.sender();
    let mut lines = 0;
    for i in 0..20 {
        let datagram = format!(
            "page.requests:1|c\npage.temp:{i}|g\npage.latency:{}|ms\npage.users:u{i}|s\nbad line\npage.bad:x|c",
            i * 3
        );
        sender.send(datagram.as_bytes()).expect("send");
        lines += 6;
    }
    sender
        .send(b"_hb|orion|3.4|a\n_hb|orion|3.4|b\n_hb|iotagent|1.0|c")
        .expect("send beats");
    gw.wait_for("every line counted", Duration::from_secs(10), |g| {
        g.lines_counted() == lines
    });
    gw.wait_for("three senders", Duration::from_secs(10), |g| {
        g.counter("statsgate_heartbeat_senders", "") == 3
    });
    for _ in 0..2 {
        gw.next_flush(Duration::from_secs(5)).expect("a flush");
    }
    lines
}

fn artifact_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("artifacts").join("status-page.png")
}

#[test]
fn the_page_shows_what_metrics_serves_in_a_real_browser_with_and_without_javascript() {
    let Some(bin) = browser_or_skip("status page") else {
        return;
    };
    let gw = common::start_env(WITH_PROBES, &[("STATSGATE_PROBES__ENABLED", "true")]);
    traffic(&gw);
    let url = format!("http://{}/", gw.admin);

    let (status, body) = gw.get("/");
    assert_eq!(status, 200);
    assert!(
        !body.contains("src=\"http") && !body.contains("href=\"http") && !body.contains("url("),
        "the page references no external asset"
    );

    // With JavaScript: the refresh has swapped <main> at least once when the DOM is dumped.
    let before = scrape(&gw);
    let dom = dom_with_js(&bin, &url);
    let after = scrape(&gw);
    let with_js = assert_figures_match(&dom, &before, &after);
    let body_el = elements(&dom)
        .into_iter()
        .find(|e| e.tag == "body")
        .expect("body");
    let refreshes: u32 = body_el
        .attrs
        .get("data-refreshes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(refreshes >= 1, "the script never refreshed the page");
    let html_el = elements(&dom)
        .into_iter()
        .find(|e| e.tag == "html")
        .expect("html");
    assert_eq!(html_el.attrs.get("data-js").map(|s| s.as_str()), Some("on"));

    // The figures that say the traffic arrived, not only that they match.
    assert_eq!(
        with_js["statsgate_lines_accepted_total{type=\"counter\"}"],
        20.0
    );
    assert_eq!(
        with_js["statsgate_lines_accepted_total{type=\"timer\"}"],
        20.0
    );
    assert_eq!(with_js["statsgate_heartbeat_senders"], 3.0);
    assert!(
        with_js
            .keys()
            .any(|k| k.starts_with("statsgate_lines_rejected_total"))
    );
    for key in [
        "statsgate_kernel_receive_drops_total",
        "statsgate_forward_queue_bytes",
        "statsgate_spool_bytes",
        "statsgate_token_renewals_total",
        "statsgate_series",
    ] {
        assert!(with_js.contains_key(key), "the page does not show {key}");
    }
    assert!(with_js.len() >= 30, "only {} figures", with_js.len());
    let liveness: Vec<Element> = elements(&dom)
        .into_iter()
        .filter(|e| e.attrs.get("class").is_some_and(|c| c == "enabler"))
        .collect();
    assert_eq!(liveness.len(), 2 + 3, "2 groups and 3 instances");
    // The history holds the probes' by-minute points: their charts draw a line.
    for chart in ["cpu.idle_perc", "mem.usable_perc"] {
        let at = dom
            .find(&format!("data-chart=\"{chart}\""))
            .unwrap_or_else(|| panic!("no {chart} chart"));
        let figure = &dom[at..at + dom[at..].find("</figure>").expect("figure end")];
        assert!(figure.contains("class=\"line\""), "{chart}: {figure}");
        assert!(!figure.contains("no data yet"), "{chart}: {figure}");
    }

    // Without JavaScript: the same figures, server-rendered, and no refresh.
    let before = scrape(&gw);
    let dom = dom_without_js(&bin, &url);
    let after = scrape(&gw);
    let without_js = assert_figures_match(&dom, &before, &after);
    let html_el = elements(&dom)
        .into_iter()
        .find(|e| e.tag == "html")
        .expect("html");
    assert!(!html_el.attrs.contains_key("data-js"), "a script ran");
    assert_eq!(
        with_js.keys().collect::<Vec<_>>(),
        without_js.keys().collect::<Vec<_>>()
    );

    // The screenshot: the test's artifact.
    let png = artifact_path();
    std::fs::create_dir_all(png.parent().expect("artifacts dir")).expect("mkdir artifacts");
    let _ = std::fs::remove_file(&png);
    run_browser(
        &bin,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,1800",
            "--hide-scrollbars",
        ],
        &url,
    );
    let bytes = std::fs::read(&png).expect("the screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 20_000,
        "a blank screenshot? {} bytes",
        bytes.len()
    );
    println!("status page screenshot: {}", png.display());
}

#[test]
fn the_page_answers_with_a_strict_policy_and_no_cache() {
    let gw = common::start(CONFIG);
    let (status, raw) = common::request(
        gw.admin,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let _ = raw;
    let mut s = std::net::TcpStream::connect(gw.admin).expect("connect");
    std::io::Write::write_all(
        &mut s,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").expect("head");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-store"), "{head}");
    let csp = head
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .expect("a CSP");
    let nonce = csp
        .split("script-src 'nonce-")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("a script nonce");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert!(body.contains(&format!("<script nonce=\"{nonce}\">")));
    assert!(body.contains(&format!("<style nonce=\"{nonce}\">")));
    // A fresh nonce each time.
    let (_, again) = gw.get("/");
    assert!(!again.contains(nonce));
}

#[test]
fn values_senders_control_show_as_text_and_run_no_script() {
    let Some(bin) = browser_or_skip("status page XSS") else {
        return;
    };
    let gw = common::start(CONFIG);
    // Markup in a heartbeat is refused at ingest (Monasca forbids < > = " in dimensions)...
    let (status, body) = common::curl_post(
        gw.http,
        "/beat",
        r#"{"ID": "x1", "Enabler_ID": "<script>document.title='pwned'</script>", "Enabler_Version": "<img src=x onerror=document.title='pwned'>"}"#,
    );
    assert_eq!(status, 422, "{body}");
    // ... and so is it in a statsd name.
    let sender = gw.sender();
    sender
        .send(b"<script>document.title='pwned'</script>:1|c")
        .expect("send");
    // What passes is free text: quotes, slashes, parentheses. It must stay text.
    let enabler = "x'/autofocus/onfocus/document.title/pwned//'";
    let version = "1.0')(document.title)('";
    sender
        .send(format!("_hb|{enabler}|{version}|inst'1").as_bytes())
        .expect("send beat");
    gw.wait_for("the beat tracked", Duration::from_secs(10), |g| {
        g.counter("statsgate_heartbeat_senders", "") == 1
            && g.counter("statsgate_lines_rejected_total", "") >= 1
    });
    let url = format!("http://{}/", gw.admin);
    for dom in [dom_with_js(&bin, &url), dom_without_js(&bin, &url)] {
        assert_eq!(title(&dom), "statsgate status", "a script ran: {dom}");
        assert!(!dom.contains("pwned'</script>") && !dom.contains("<script>document"));
        let all = elements(&dom);
        assert_eq!(
            all.iter().filter(|e| e.tag == "script").count(),
            1,
            "only the page's own script"
        );
        for e in &all {
            for attr in ["autofocus", "onfocus", "onerror", "onload"] {
                assert!(!e.attrs.contains_key(attr), "an injected {attr} on {e:?}");
            }
        }
        let cells: Vec<&Element> = all
            .iter()
            .filter(|e| e.attrs.get("class").is_some_and(|c| c == "enabler"))
            .collect();
        assert_eq!(cells.len(), 2, "the group and the instance");
        assert!(cells.iter().all(|e| e.text == enabler), "{cells:?}");
        assert!(
            all.iter()
                .filter(|e| e.attrs.get("class").is_some_and(|c| c == "version"))
                .all(|e| e.text == version)
        );
    }
}
