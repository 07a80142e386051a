//! The real Keystone and monasca-api, started by `tests/e2e/kit.py` for one test function and
//! stopped (exactly the processes it started) when the [`Kit`] drops. Over HTTP, or over
//! HTTPS with a test PKI the test makes ([`Kit::start_tls`]).

use crate::common::pki::Pki;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Keystone tokens live 30 s, so the longer scenarios cross several renewals.
pub const TOKEN_SECONDS: u64 = 30;

pub struct Kit {
    workdir: tempfile::TempDir,
    pub info: Value,
    /// The CA both servers' certificates chain to, and the certificates (HTTPS kits only).
    pub pki: Option<Pki>,
}

fn kit_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/kit.py")
}

fn run(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("python3").arg(kit_py()).args(args).output()
}

impl Kit {
    /// Plain HTTP. `None` (after a loud message) where the kit cannot be installed, outside CI.
    pub fn start() -> Option<Kit> {
        Kit::start_with(None)
    }

    /// Both servers on HTTPS with a certificate for 127.0.0.1 from a fresh test CA, which
    /// monasca-api's keystonemiddleware trusts (and statsgate must be told about).
    pub fn start_tls() -> Option<Kit> {
        Kit::start_with(Some(Pki::new()))
    }

    fn start_with(pki: Option<Pki>) -> Option<Kit> {
        let installed = match run(&["install"]) {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
            Err(e) => Err(format!("python3: {e}")),
        };
        if let Err(why) = installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the real-server suite: {why}"
            );
            eprintln!("\n*** SKIPPING the real Keystone/Monasca suite: {why}\n");
            return None;
        }
        let workdir = tempfile::tempdir().expect("workdir");
        let dir = workdir.path().to_string_lossy().into_owned();
        let expiration = TOKEN_SECONDS.to_string();
        let mut args = vec![
            "start".to_owned(),
            "--workdir".to_owned(),
            dir,
            "--token-expiration".to_owned(),
            expiration,
        ];
        if let Some(p) = &pki {
            for (flag, path) in [
                ("--tls-cert", &p.cert),
                ("--tls-key", &p.key),
                ("--tls-ca", &p.ca),
            ] {
                args.push(flag.to_owned());
                args.push(path.to_string_lossy().into_owned());
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args).expect("kit start");
        // The guard exists before any assertion, so a failed start still stops what it began.
        let mut kit = Kit {
            workdir,
            info: Value::Null,
            pki,
        };
        assert!(
            out.status.success(),
            "kit start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        kit.info = serde_json::from_slice(&out.stdout).expect("kit JSON line");
        Some(kit)
    }

    pub fn s(&self, key: &str) -> String {
        self.info[key].as_str().unwrap_or_default().to_owned()
    }

    /// The test CA's PEM path (HTTPS kits).
    pub fn ca_file(&self) -> String {
        let pki = self.pki.as_ref().expect("an HTTPS kit");
        pki.ca.to_string_lossy().into_owned()
    }

    /// Everything monasca-api published: `{"metric", "meta": {"tenantId", "region"}, ...}`.
    pub fn published(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.s("published_file")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn published_with_prefix(&self, prefix: &str) -> Vec<Value> {
        self.published()
            .into_iter()
            .filter(|e| {
                e["metric"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .collect()
    }

    pub fn set_fault(&self, on: bool) {
        let path = self.s("fault_file");
        if on {
            std::fs::write(&path, b"").expect("fault file");
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Makes `server` (`keystone` or `monasca`) serve another certificate from its next
    /// connection on, until the guard drops (then the right one again, also on a panic).
    pub fn serve_cert(&self, server: &'static str, cert: &Path, key: &Path) -> ServedCert<'_> {
        if let Err(e) = self.swap_cert(server, cert, key) {
            panic!("{e}");
        }
        ServedCert { kit: self, server }
    }

    fn swap_cert(&self, server: &str, cert: &Path, key: &Path) -> Result<(), String> {
        let dir = self.workdir.path().to_string_lossy().into_owned();
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        let args = [
            "serve-cert",
            "--workdir",
            &dir,
            "--server",
            server,
            "--cert",
            &cert,
            "--key",
            &key,
        ];
        match run(&args) {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "kit serve-cert failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => Err(format!("kit serve-cert: {e}")),
        }
    }

    /// `keystone:` for the `statsgate` user (only `monasca-agent`), password identity; on an
    /// HTTPS kit with `ca_file` set to the test CA.
    pub fn password_yaml(&self) -> String {
        let ca = match &self.pki {
            Some(p) => format!("  ca_file: {}\n", p.ca.display()),
            None => String::new(),
        };
        format!("{}{ca}", self.password_yaml_without_ca())
    }

    /// [`Kit::password_yaml`] without `ca_file`.
    pub fn password_yaml_without_ca(&self) -> String {
        let user = &self.info["users"]["statsgate"];
        format!(
            "keystone:\n  auth_url: {}\n  username: {}\n  password: {}\n  project_name: {}\n  user_domain_name: {}\n  project_domain_name: {}\n",
            self.s("keystone_url"),
            user["name"].as_str().unwrap(),
            user["password"].as_str().unwrap(),
            self.s("project_name"),
            self.s("user_domain_name"),
            self.s("project_domain_name"),
        )
    }
}

/// See [`Kit::serve_cert`].
pub struct ServedCert<'a> {
    kit: &'a Kit,
    server: &'static str,
}

impl Drop for ServedCert<'_> {
    fn drop(&mut self) {
        // Never a panic here: this may run while a failed assertion unwinds.
        if let Some(p) = &self.kit.pki
            && let Err(e) = self.kit.swap_cert(self.server, &p.cert, &p.key)
        {
            eprintln!("could not restore {}'s certificate: {e}", self.server);
        }
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        // Stops exactly the servers this kit started (their pids are in the workdir).
        let dir = self.workdir.path().to_string_lossy().into_owned();
        let _ = run(&["stop", "--workdir", &dir]);
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
