//! The packaging files read as their tools read them: the Dockerfile's instructions, the
//! `[package.metadata.deb]` table (through `cargo metadata`), the built `.deb` (through
//! `dpkg-deb` and `dpkg`), compose services' commands.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The package as `cargo metadata` reports it (the manifest as cargo itself parses it).
fn package() -> Value {
    let out = super::run_ok(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(ROOT)
            .args([
                "metadata",
                "--no-deps",
                "--offline",
                "--format-version",
                "1",
            ]),
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "statsgate")
        .cloned()
        .unwrap()
}

pub struct DebMetadata(Value);

pub fn deb_metadata() -> DebMetadata {
    DebMetadata(package()["metadata"]["deb"].clone())
}

impl DebMetadata {
    /// Where the asset from `source` is installed (relative, as cargo-deb writes it), with
    /// the file name appended when the destination is a directory.
    pub fn asset_dest(&self, source: &str) -> String {
        let asset = self.0["assets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a[0] == source)
            .unwrap_or_else(|| panic!("no deb asset {source}"));
        let dest = asset[1].as_str().unwrap();
        match dest.strip_suffix('/') {
            Some(dir) => format!("{dir}/{}", Path::new(source).file_name().unwrap().display()),
            None => dest.to_owned(),
        }
    }
}

/// One instruction: its keyword (upper case) and its arguments, continuation lines joined.
pub struct Dockerfile(Vec<(String, String)>);

impl Dockerfile {
    pub fn read() -> Dockerfile {
        let text = read("Dockerfile");
        let mut out = Vec::new();
        let mut pending = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
                continue;
            }
            match trimmed.strip_suffix('\\') {
                Some(head) => {
                    pending.push_str(head);
                    pending.push(' ');
                }
                None => {
                    pending.push_str(trimmed);
                    let (op, args) = pending.split_once(' ').unwrap_or((&pending, ""));
                    out.push((
                        op.to_ascii_uppercase(),
                        args.split_whitespace().collect::<Vec<_>>().join(" "),
                    ));
                    pending.clear();
                }
            }
        }
        Dockerfile(out)
    }

    /// The instructions of stage `n` (0 = the first FROM), without the FROM itself.
    fn stage(&self, n: usize) -> &[(String, String)] {
        let froms: Vec<usize> = (0..self.0.len())
            .filter(|i| self.0[*i].0 == "FROM")
            .collect();
        let start = froms[n] + 1;
        let end = froms.get(n + 1).copied().unwrap_or(self.0.len());
        &self.0[start..end]
    }

    fn runtime(&self) -> &[(String, String)] {
        let froms = self.0.iter().filter(|(op, _)| op == "FROM").count();
        self.stage(froms - 1)
    }

    /// The last `op` instruction's arguments, or "".
    pub fn last(&self, op: &str) -> String {
        self.0
            .iter()
            .rev()
            .find(|(o, _)| o == op)
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    }

    pub fn args(&self, op: &str) -> Vec<String> {
        self.last(op)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// The runtime image's environment (`ENV K=V ...`).
    pub fn env(&self) -> Vec<(String, String)> {
        self.runtime()
            .iter()
            .filter(|(op, _)| op == "ENV")
            .flat_map(|(_, args)| args.split_whitespace())
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("ENV in the K=V form");
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    /// Every exposed port as `port/proto`.
    pub fn exposed(&self) -> BTreeSet<String> {
        self.0
            .iter()
            .filter(|(op, _)| op == "EXPOSE")
            .flat_map(|(_, a)| a.split_whitespace())
            .map(|p| {
                if p.contains('/') {
                    p.to_owned()
                } else {
                    format!("{p}/tcp")
                }
            })
            .collect()
    }

    /// `(--from, sources, destination)` of every COPY.
    pub fn copies(&self) -> Vec<CopyLine> {
        copies_in(&self.0)
    }
}

type CopyLine = (Option<String>, Vec<String>, String);

/// `(--from, sources, destination)` of the COPY lines among `instructions`.
fn copies_in(instructions: &[(String, String)]) -> Vec<CopyLine> {
    instructions
        .iter()
        .filter(|(op, _)| op == "COPY")
        .map(|(_, a)| {
            let mut words: Vec<&str> = a.split_whitespace().collect();
            let from = words
                .first()
                .and_then(|w| w.strip_prefix("--from="))
                .map(str::to_owned);
            if from.is_some() {
                words.remove(0);
            }
            let dest = words.pop().unwrap().to_owned();
            (from, words.iter().map(|w| (*w).to_owned()).collect(), dest)
        })
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// The build stage, without a container engine: its command is the release build the
/// package ships, and its context (what it COPYs, nothing else) holds every file that
/// Cargo.toml's targets and the sources' include_str!/include_bytes! name.
pub fn check_docker_build(df: &Dockerfile) {
    let build = df.stage(0);
    let workdir = build
        .iter()
        .find(|(op, _)| op == "WORKDIR")
        .map(|(_, a)| a.clone())
        .expect("WORKDIR in the build stage");
    let runs: Vec<&str> = build
        .iter()
        .filter(|(op, _)| op == "RUN")
        .map(|(_, a)| a.as_str())
        .collect();
    // CI builds no release binary; this is the command cargo-deb runs for the package
    // (`cargo build --release --locked` for its one binary), so image and package ship one
    // build. --locked as every cargo command in .ci/run.
    assert_eq!(runs, ["cargo build --release --locked --bin statsgate"]);
    let ci = read(".ci/run");
    for line in ci.lines().map(str::trim).filter(|l| {
        l.starts_with("cargo build") || l.starts_with("cargo test") || l.starts_with("cargo clippy")
    }) {
        assert!(line.contains("--locked"), ".ci/run: {line}");
    }
    let package = package();
    let deb = &package["metadata"]["deb"];
    assert!(
        deb.get("profile").is_none(),
        "cargo deb builds the release profile"
    );
    assert!(
        deb["assets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a[0] == "target/release/statsgate")
    );
    let binary = format!("{workdir}/target/release/statsgate");
    assert!(
        df.copies()
            .iter()
            .any(|(from, src, _)| from.as_deref() == Some("build")
                && src == std::slice::from_ref(&binary)),
        "the runtime stage takes {binary}"
    );
    // The toolchain image is at least the minimum Rust version.
    let from = df.0.iter().find(|(op, _)| op == "FROM").unwrap().1.clone();
    let tag = from
        .strip_prefix("rust:")
        .expect("a rust: image")
        .split('-')
        .next()
        .unwrap();
    let version = |v: &str| -> (u32, u32) {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    let msrv = package["rust_version"].as_str().unwrap();
    assert!(
        version(tag) >= version(msrv),
        "rust:{tag} is older than rust-version {msrv}"
    );

    // The context, as the COPY lines of the build stage lay it out.
    let ctx = tempfile::tempdir().unwrap();
    for (_, sources, dest) in copies_in(build).iter().filter(|(f, _, _)| f.is_none()) {
        // Relative to WORKDIR, or absolute inside it: never a path of this host.
        let dest = dest.strip_prefix(&workdir).unwrap_or(dest);
        let dest = dest.trim_start_matches("./").trim_start_matches('/');
        for src in sources {
            let target: PathBuf = if dest.is_empty() || dest.ends_with('/') {
                ctx.path()
                    .join(dest)
                    .join(Path::new(src).file_name().unwrap())
            } else {
                ctx.path().join(dest)
            };
            assert!(target.starts_with(ctx.path()), "{}", target.display());
            copy_tree(&Path::new(ROOT).join(src), &target);
        }
    }
    super::run_ok(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(ctx.path())
            .args([
                "metadata",
                "--locked",
                "--offline",
                "--no-deps",
                "--format-version",
                "1",
            ]),
    );
    for target in package["targets"].as_array().unwrap() {
        let src = Path::new(target["src_path"].as_str().unwrap());
        let rel = src.strip_prefix(ROOT).unwrap();
        let kinds = &target["kind"];
        // Tests and examples are not built by `cargo build --bin`.
        if kinds[0] == "test" || kinds[0] == "example" {
            continue;
        }
        assert!(
            ctx.path().join(rel).exists(),
            "{} ({kinds}) is not in the image's build context",
            rel.display()
        );
    }
    let include = regex::Regex::new(r#"include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)"#).unwrap();
    let mut stack = vec![ctx.path().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for caps in include.captures_iter(&text) {
                    let named = path.parent().unwrap().join(&caps[1]);
                    assert!(
                        named.exists(),
                        "{}: {} is not in the build context",
                        path.display(),
                        &caps[1]
                    );
                }
            }
        }
    }
}

/// The line of a compose service's `command` loop that holds `needle`, with compose's `$$`
/// unescaped: what its shell runs once per turn.
pub fn loop_line(service: &Value, needle: &str) -> String {
    let script = service["command"][0].as_str().expect("command: [script]");
    let line = script
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle} in {script}"));
    line.trim().replace("$$", "$")
}

/// A compose service's environment map.
pub fn string_env(service: &Value) -> Vec<(String, String)> {
    service["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package's contents, control files and maintainer scripts, then (as root, on a host
/// that systemd does not run) its install, upgrade, remove and purge in a scratch root.
pub fn check_deb(deb: &Path, work: &Path, bin: &str) {
    let run = |args: &[&str]| super::run_ok(Command::new(args[0]).args(&args[1..]));
    let deb_s = deb.to_str().unwrap();
    let info = text(&run(&[
        "dpkg-deb",
        "--field",
        deb_s,
        "Package",
        "Depends",
        "Recommends",
    ]));
    assert!(info.contains("Package: statsgate"), "{info}");
    assert!(info.contains("Recommends: ca-certificates"), "{info}");

    let listing = text(&run(&["dpkg-deb", "--contents", deb_s]));
    let entry = |path: &str| -> String {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" .{path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"))
            .to_owned()
    };
    let bin_entry = entry("/usr/bin/statsgate");
    let owner = bin_entry.split_whitespace().nth(1).unwrap_or_default();
    assert!(bin_entry.starts_with("-rwxr-xr-x"), "{bin_entry}");
    assert!(
        owner == "0/0" || owner == "root/root",
        "owned by root: {bin_entry}"
    );
    assert!(entry("/usr/lib/systemd/system/statsgate.service").starts_with("-rw-r--r--"));
    assert!(entry("/etc/statsgate/statsgate.yaml").starts_with("-rw-r--r--"));
    assert!(
        entry("/etc/statsgate/statsgate.env").starts_with("-rw-------"),
        "secrets root-only"
    );
    for doc in [
        "README.md",
        "copyright",
        "examples/checks.example.yaml",
        "dashboards/ge-heartbeats.json",
    ] {
        entry(&format!("/usr/share/doc/statsgate/{doc}"));
    }

    let control = work.join("control");
    run(&["dpkg-deb", "--control", deb_s, control.to_str().unwrap()]);
    let conffiles: BTreeSet<String> = std::fs::read_to_string(control.join("conffiles"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        conffiles,
        BTreeSet::from([
            "/etc/statsgate/statsgate.yaml".into(),
            "/etc/statsgate/statsgate.env".into()
        ])
    );
    let script = |name: &str| std::fs::read_to_string(control.join(name)).unwrap();
    for name in ["postinst", "prerm", "postrm"] {
        run(&["sh", "-n", control.join(name).to_str().unwrap()]);
    }
    let postinst = script("postinst");
    assert!(postinst.contains("daemon-reload"), "{postinst}");
    assert!(
        postinst.contains("try-restart statsgate.service"),
        "an upgrade restarts a running gateway"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke start"),
        "not started before it is configured"
    );
    assert!(script("prerm").contains("deb-systemd-invoke stop statsgate.service"));
    let postrm = script("postrm");
    assert!(
        postrm.contains("deb-systemd-helper purge statsgate.service"),
        "{postrm}"
    );
    assert!(
        postrm.contains(r#"rm -rf "${DPKG_ROOT:-}/var/lib/private/statsgate""#),
        "{postrm}"
    );

    // The files are this repository's, the binary this build's.
    let data = work.join("data");
    run(&["dpkg-deb", "--extract", deb_s, data.to_str().unwrap()]);
    for (packaged, source) in [
        (
            "usr/lib/systemd/system/statsgate.service",
            "packaging/statsgate.service",
        ),
        ("etc/statsgate/statsgate.yaml", "config/statsgate.yaml"),
        ("etc/statsgate/statsgate.env", "packaging/statsgate.env"),
    ] {
        assert_eq!(
            std::fs::read_to_string(data.join(packaged)).unwrap(),
            read(source),
            "{packaged}"
        );
    }
    let packaged = data.join("usr/bin/statsgate");
    let version = |b: &str| text(&run(&[b, "--version"]));
    assert_eq!(version(packaged.to_str().unwrap()), version(bin));

    // Installed by dpkg itself. Its scripts call systemctl where systemd runs (a developer's
    // machine): only where it does not, and as root.
    if Path::new("/run/systemd/system").exists()
        || unsafe { libc::geteuid() } != 0
        || !super::have("systemctl", &["--version"])
    {
        eprintln!("skipped the dpkg install: needs root on a host systemd does not run");
        return;
    }
    let root = work.join("root");
    let root_s = root.to_str().unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates")).unwrap();
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let root_arg = format!("--root={root_s}");
    // Scripts run on this host with DPKG_ROOT set (deb-systemd-helper honours it); the
    // scratch root has no libc6 package to satisfy Depends.
    let dpkg = |action: &[&str]| {
        let mut args = vec![
            "dpkg",
            &root_arg,
            "--force-script-chrootless",
            "--force-depends",
        ];
        args.extend_from_slice(action);
        run(&args)
    };
    dpkg(&["--install", deb_s]);
    let conf = root.join("etc/statsgate/statsgate.yaml");
    assert!(root.join("usr/bin/statsgate").exists());
    // Enabled as an operator does it (systemctl works on a root without systemd running).
    run(&["systemctl", &root_arg, "enable", "statsgate.service"]);
    let wants = root.join("etc/systemd/system/multi-user.target.wants/statsgate.service");
    assert!(
        wants.symlink_metadata().is_ok(),
        "[Install] WantedBy=multi-user.target"
    );
    // An operator's edit survives reinstalling (a conffile), and so does the state.
    let edited = format!(
        "{}# edited by the operator\n",
        read("config/statsgate.yaml")
    );
    std::fs::write(&conf, &edited).unwrap();
    let state = root.join("var/lib/private/statsgate");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("spool-0001"), "unsent").unwrap();
    dpkg(&["--force-confold", "--install", deb_s]);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    // Remove keeps conffiles and state; purge takes them, the enablement links too.
    dpkg(&["--remove", "statsgate"]);
    assert!(!root.join("usr/bin/statsgate").exists());
    assert!(conf.exists() && state.join("spool-0001").exists());
    dpkg(&["--purge", "statsgate"]);
    assert!(!conf.exists(), "purge removes the conffiles");
    assert!(!state.exists(), "purge removes the spool");
    assert!(
        wants.symlink_metadata().is_err(),
        "purge removes the enablement"
    );
}
