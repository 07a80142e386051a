//! statsgate binary: CLI → load and validate config (exit 2 naming the bad key) → run.

use clap::{Parser, Subcommand};
use statsgate::config::{self, Config, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "statsd/UDP metrics ingestion gateway for OpenStack Monasca"
)]
struct Cli {
    /// YAML configuration file; without one, built-in defaults and STATSGATE_* variables.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Load and validate the configuration, print the effective settings, and exit.
    CheckConfig {
        /// Also authenticate with Keystone and print the roles and Monasca endpoint.
        #[arg(long)]
        online: bool,
    },
    /// Ask the running gateway (found from `admin.listen` of this configuration) to reload
    /// its configuration, as SIGHUP does, and print the outcome; exit 1 if it kept the old one.
    Reload,
    /// Load generator: send statsd traffic to a server and report what it accepted.
    Bench(Box<statsgate::loadgen::Options>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config::Loaded {
        config,
        ignored_env,
    } = match config::load_reporting(cli.config.as_deref(), config::utf8_env()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("statsgate: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // Names only: values may be anything, secrets included.
    let ignored_note = (!ignored_env.is_empty()).then(|| {
        format!(
            "ignoring environment variables that are not STATSGATE_<SECTION>__<KEY> overrides \
             (Kubernetes sets such names for a Service called statsgate): {}",
            ignored_env.join(", ")
        )
    });
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig { online } => {
            if let Some(note) = &ignored_note {
                eprintln!("statsgate: warning: {note}");
            }
            let printed = check_config(&config);
            if !online || printed != ExitCode::SUCCESS {
                return printed;
            }
            match statsgate::gateway::check_online(&config) {
                Ok(report) => {
                    eprint!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("statsgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench(opts) => bench(&opts.with_config(&config)),
        Command::Reload => reload(&config),
        Command::Run => {
            let set_log_level = init_logging(&config);
            if let Some(note) = &ignored_note {
                tracing::warn!("{note}");
            }
            let options = statsgate::gateway::Options {
                config_path: cli.config.clone(),
                set_log_level: Some(set_log_level),
            };
            match statsgate::gateway::run(config, options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("statsgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs the load generator; fails when `--verify` found a mismatch.
fn bench(opts: &statsgate::loadgen::Options) -> ExitCode {
    match statsgate::loadgen::run(opts) {
        Ok(report) => {
            if opts.json {
                match serde_json::to_string(&report) {
                    Ok(j) => println!("{j}"),
                    Err(e) => eprintln!("statsgate bench: {e}"),
                }
            } else {
                print!("{}", statsgate::loadgen::render(&report));
            }
            if report.verify.as_ref().is_some_and(|v| !v.ok) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("statsgate bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(config: &Config) -> ExitCode {
    // Proves the directory usable the way start-up would (creating it if missing), without
    // taking the lock a running gateway holds or writing anything that stays.
    if !config.buffer.spool_dir.is_empty() {
        let dir = std::path::Path::new(&config.buffer.spool_dir);
        match statsgate::spool::dir::check_usable(dir) {
            Ok(None) => {}
            Ok(Some(warning)) => eprintln!("statsgate: warning: {warning}"),
            Err(e) => {
                eprintln!("statsgate: invalid configuration: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match serde_saphyr::to_string(&config.redacted()) {
        Ok(yaml) => {
            print!("{yaml}");
            eprintln!("statsgate: configuration OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("statsgate: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: stdout belongs to the console sink. Returns what a reload calls to
/// set `log.level` (`RUST_LOG`, when set, wins at start and keeps winning).
fn init_logging(config: &Config) -> statsgate::gateway::SetLogLevel {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let from_env = EnvFilter::try_from_default_env().is_ok();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // Each format has its own subscriber type, hence its own handle.
    let set: Box<dyn Fn(EnvFilter) -> Result<(), String> + Send> = match config.log.format {
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }
    };
    Box::new(move |level: &str| {
        if from_env {
            return Err("RUST_LOG is set and wins over log.level".to_owned());
        }
        set(EnvFilter::try_new(level).map_err(|e| format!("{level:?} is no filter: {e}"))?)
    })
}

/// `statsgate reload`: `POST /-/reload` on the admin port this configuration names.
fn reload(config: &Config) -> ExitCode {
    match statsgate::admin::client::reload(config) {
        Ok((true, message)) => {
            eprintln!("statsgate: reload: {message}");
            ExitCode::SUCCESS
        }
        Ok((false, message)) => {
            eprintln!(
                "statsgate: reload: {message}; the gateway runs on with its previous configuration"
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("statsgate reload: {e:#}");
            ExitCode::FAILURE
        }
    }
}
