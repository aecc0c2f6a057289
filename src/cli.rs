//! The command line of the contract: `switchboard [serve|demo|init|check|mock-upstream|attach]`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::gateway::Gateway;
use crate::mock_upstream::{self, MockOptions};

const DEFAULT_CONFIG: &str = "switchboard.toml";

#[derive(Parser, Debug)]
#[command(
    name = "switchboard",
    version,
    about = "An OpenAI-compatible gateway that routes each model over several deployments by their TPM limits, with failover.",
    after_help = "Without a command: the gateway with its dashboard in this terminal."
)]
struct Cli {
    /// Config file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Overrides server.listen.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Allow a non-loopback listen address without client keys, and the admin
    /// API for remote clients without an admin key.
    #[arg(long)]
    allow_unauthenticated: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Gateway only, no dashboard, logs to stderr.
    Serve {
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Allow a non-loopback listen address without client keys, and the admin
        /// API for remote clients without an admin key.
        #[arg(long)]
        allow_unauthenticated: bool,
    },
    /// The dashboard and gateway on built-in simulated upstreams with generated traffic; no keys, no network.
    Demo {
        /// Where the demo's config lives (written when it does not exist yet).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// No dashboard: print one line per request.
        #[arg(long)]
        headless: bool,
    },
    /// Write a commented starter config (refuses to overwrite).
    Init {
        #[arg(value_name = "FILE", default_value = DEFAULT_CONFIG)]
        file: PathBuf,
    },
    /// Validate a config and print a summary.
    Check {
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// A simulated OpenAI-compatible upstream for demos, tests and benchmarks.
    // Boxed: its many options would make every other command as large.
    MockUpstream(Box<MockOptions>),
    /// The dashboard on a gateway that runs elsewhere, through its admin API.
    Attach {
        /// The gateway: `http://HOST:PORT` or `https://…` (a `/v1` or `/admin` path is taken off).
        #[arg(value_name = "URL")]
        url: String,
        /// The gateway's admin key: literal, `env:VAR` or `file:PATH`
        /// (default `env:SWITCHBOARD_ADMIN_KEY` when that is set).
        #[arg(long, value_name = "KEY")]
        admin_key: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => dashboard(&cli.config, cli.listen, cli.allow_unauthenticated),
        Some(Command::Serve {
            config,
            listen,
            allow_unauthenticated,
        }) => serve(&config, listen, allow_unauthenticated),
        Some(Command::Demo {
            config,
            listen,
            headless,
        }) => demo(config, listen, headless),
        Some(Command::Init { file }) => init(&file),
        Some(Command::Check { config }) => check(&config),
        Some(Command::MockUpstream(opts)) => {
            runtime().and_then(|rt| rt.block_on(mock_upstream::run(*opts)))
        }
        Some(Command::Attach { url, admin_key }) => attach(&url, admin_key.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!, which panics when stderr is a closed pipe too.
            let _ = writeln!(std::io::stderr(), "switchboard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout. A reader that went away (`switchboard check |
/// head -1`) is not an error: it read what it wanted, and the command's
/// outcome stands. `println!` would panic there instead: Rust ignores
/// SIGPIPE, so the write fails with `EPIPE`. Restoring SIGPIPE's default
/// would also end the servers (`serve`, `mock-upstream`) whose log reader
/// leaves, so only the commands' own output is treated this way.
fn print_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}

/// The main runtime: signals, config watching, the dashboard, the demo's
/// simulated upstreams and handing connections to the serving threads
/// (`gateway::server`), which have runtimes of their own.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

/// Loads a config, or explains what to do when there is none.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    if !path.exists() {
        anyhow::bail!(
            "no config file at {}.\n  Try the demo, which needs none:   switchboard demo\n  Or write a commented starter:     switchboard init {}\n  Or point at yours:                switchboard serve --config FILE",
            path.display(),
            path.display()
        );
    }
    Ok(Config::load(path)?)
}

/// Refuses an address other machines can reach without client keys.
fn exposure(path: &Path, config: &Config, addr: SocketAddr, allow: bool) -> anyhow::Result<()> {
    crate::gateway::check_exposure(addr, &config.server, allow)
        .map_err(|m| anyhow::anyhow!("{}: server.listen: {m}", path.display()))
}

/// The gateway for `config`, and its listener bound to `addr`.
async fn start(
    path: &Path,
    config: &Config,
    addr: SocketAddr,
    allow: bool,
) -> anyhow::Result<(Gateway, tokio::net::TcpListener)> {
    let gateway = Gateway::new(config)?;
    gateway.allow_unauthenticated(allow);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} (server.listen in {}): {e}",
            path.display()
        )
    })?;
    Ok((gateway, listener))
}

fn serve(path: &Path, listen: Option<SocketAddr>, allow: bool) -> anyhow::Result<()> {
    let _log = crate::logging::to_stderr();
    let config = load(path)?;
    let addr = listen.unwrap_or(config.server.listen);
    exposure(path, &config, addr, allow)?;
    let rt = runtime()?;
    rt.block_on(async {
        let (gateway, listener) = start(path, &config, addr, allow).await?;
        tracing::info!(
            "switchboard serving {} model(s) on http://{}/v1 (config {})",
            config.models.len(),
            listener.local_addr()?,
            path.display()
        );
        serve_until_signalled(&gateway, listener).await?;
        tracing::info!("switchboard stopped");
        Ok(())
    })
}

/// The dashboard draws on stdout and reads keys from stdin: both must be a terminal.
fn require_terminal(instead: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !(std::io::stdout().is_terminal() && std::io::stdin().is_terminal()) {
        anyhow::bail!("the dashboard needs a terminal, and this is not one; {instead}");
    }
    Ok(())
}

/// Without a command: the gateway in the background, the dashboard in front.
fn dashboard(path: &Path, listen: Option<SocketAddr>, allow: bool) -> anyhow::Result<()> {
    let config = load(path)?;
    let addr = listen.unwrap_or(config.server.listen);
    exposure(path, &config, addr, allow)?;
    require_terminal("`switchboard serve` runs the gateway without it")?;
    let (log, log_path) = crate::logging::to_file()?;
    let rt = runtime()?;
    let result = rt.block_on(async {
        let (gateway, listener) = start(path, &config, addr, allow).await?;
        let bound = listener.local_addr()?;
        tracing::info!(
            "switchboard serving {} model(s) on http://{bound}/v1 (config {}), with the dashboard",
            config.models.len(),
            path.display()
        );
        let info = crate::dashboard::Info {
            config_path: std::path::absolute(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .display()
                .to_string(),
            address: format!("http://{bound}/v1"),
            log_path: Some(log_path.display().to_string()),
            demo: false,
            attached: None,
            warning: None,
        };
        crate::dashboard::serve_with_dashboard(gateway, listener, info).await
    });
    if result.is_ok() {
        let _ = print_out(&format!(
            "switchboard stopped (log: {})\n",
            log_path.display()
        ));
    }
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    drop(log);
    result
}

/// The admin key `attach` sends: `--admin-key`, else `$SWITCHBOARD_ADMIN_KEY`
/// when it is set, else none. The error names the variable or the file,
/// never the key.
fn admin_key(given: Option<&str>) -> anyhow::Result<Option<config::ApiKey>> {
    const DEFAULT: &str = "SWITCHBOARD_ADMIN_KEY";
    let reference = match given {
        Some(r) => r.to_string(),
        None if std::env::var_os(DEFAULT).is_some_and(|v| !v.is_empty()) => {
            format!("env:{DEFAULT}")
        }
        None => return Ok(None),
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    config::ApiKey::parse(&reference, &cwd)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--admin-key: {e}"))
}

/// `attach URL`: the dashboard on a gateway elsewhere. The URL and the key
/// are checked before the terminal is taken, so a mistake is one line on
/// stderr and a non-zero exit.
fn attach(url: &str, key: Option<&str>) -> anyhow::Result<()> {
    let key = admin_key(key)?;
    let rt = runtime()?;
    let connected = rt.block_on(crate::dashboard::Remote::connect(url, key));
    let (remote, state) = connected?;
    require_terminal("attach shows the dashboard, and needs one")?;
    let warning = remote.key_in_clear().then(|| {
        format!(
            "the admin key travels in clear over http:// to {}; use https:// or an SSH tunnel",
            remote.url()
        )
    });
    if let Some(w) = &warning {
        let _ = writeln!(std::io::stderr(), "switchboard: warning: {w}");
    }
    let (log, log_path) = crate::logging::to_file()?;
    if let Some(w) = &warning {
        tracing::warn!("{w}");
    }
    tracing::info!(url = %remote.url(), "attaching the dashboard");
    let info = crate::dashboard::Info {
        config_path: state.gateway.config_path.clone(),
        address: state.gateway.address.clone(),
        log_path: Some(log_path.display().to_string()),
        demo: false,
        attached: Some(remote.url().to_string()),
        warning,
    };
    let first = crate::dashboard::tui::state_msg(state);
    let result = rt.block_on(crate::dashboard::run(remote, first, info));
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    drop(log);
    result
}

fn demo(config: Option<PathBuf>, listen: Option<SocketAddr>, headless: bool) -> anyhow::Result<()> {
    let (log, view) = if headless {
        (None, crate::demo::View::Lines)
    } else {
        require_terminal("`switchboard demo --headless` prints the traffic as lines instead")?;
        let (log, log_path) = crate::logging::to_file()?;
        (
            log,
            crate::demo::View::Dashboard {
                log_path: Some(log_path),
            },
        )
    };
    let rt = runtime()?;
    let result = rt.block_on(crate::demo::run(config, listen, view));
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    drop(log);
    result
}

/// Serves until SIGTERM / Ctrl-C, then stops accepting and lets requests in
/// flight finish for up to `server.shutdown_timeout_s`; a second signal stops
/// at once. Without the bound, one stalled stream would hold a shutdown for
/// request_timeout_s.
async fn serve_until_signalled(
    gateway: &Gateway,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<()> {
    let signalled = std::sync::Arc::new(tokio::sync::Notify::new());
    let server = gateway.serve(listener, {
        let signalled = signalled.clone();
        async move {
            crate::shutdown::signal().await;
            signalled.notify_one();
        }
    });
    tokio::pin!(server);
    tokio::select! {
        done = &mut server => return Ok(done?),
        _ = signalled.notified() => {}
    }
    let drain = gateway.settings().shutdown_timeout;
    tracing::info!(
        "stopping: no new connections; in-flight requests get up to {:.1}s (a second signal stops at once)",
        drain.as_secs_f64()
    );
    tokio::select! {
        done = &mut server => done?,
        _ = tokio::time::sleep(drain) => tracing::warn!("drain time is over; cutting the requests still in flight"),
        _ = crate::shutdown::signal() => tracing::warn!("second signal; cutting the requests still in flight"),
    }
    Ok(())
}

fn init(file: &Path) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                anyhow::anyhow!("{} already exists; not overwriting it", file.display())
            }
            _ => anyhow::anyhow!("cannot create {}: {e}", file.display()),
        })?;
    f.write_all(config::EXAMPLE_CONFIG.as_bytes())?;
    print_out(&format!(
        "wrote {}: edit the deployments, then `switchboard check --config {}`\n",
        file.display(),
        file.display()
    ))
}

fn check(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{}: ok — listens on {}, {} model(s)",
        path.display(),
        config.server.listen,
        config.models.len()
    );
    for m in &config.models {
        let enabled = m.deployments.iter().filter(|d| d.enabled).count();
        let mut extras = String::new();
        let mut tiers: Vec<u32> = m.deployments.iter().map(|d| d.priority).collect();
        tiers.sort_unstable();
        tiers.dedup();
        if tiers.len() > 1 {
            let names: Vec<String> = tiers.iter().map(u32::to_string).collect();
            let _ = write!(extras, ", tiers {}", names.join(" → "));
        }
        for (what, list) in [
            ("fallbacks", &m.fallbacks),
            ("context-window fallbacks", &m.context_window_fallbacks),
            ("content-policy fallbacks", &m.content_policy_fallbacks),
        ] {
            if !list.is_empty() {
                let _ = write!(extras, ", {what} {}", list.join(" → "));
            }
        }
        if m.affinity == config::Affinity::Off {
            extras.push_str(", no session affinity");
        }
        let _ = writeln!(
            text,
            "  {}: {} deployment(s), {} enabled{extras}",
            m.name,
            m.deployments.len(),
            enabled
        );
        for d in &m.deployments {
            let tpm = d
                .tpm_limit
                .map_or("no TPM limit".to_string(), |l| format!("{l} TPM"));
            let state = if d.enabled { "enabled" } else { "disabled" };
            let provider = match (&d.api_version, &d.region, &d.project) {
                (Some(v), _, _) => format!("{} {v}", d.provider),
                (_, Some(r), Some(p)) => format!("{} {p}/{r}", d.provider),
                (_, Some(r), None) if d.aws.is_some() => format!("{} {r}, SigV4", d.provider),
                (_, Some(r), None) => format!("{} {r}", d.provider),
                _ => d.provider.to_string(),
            };
            let tier = if tiers.len() > 1 {
                format!(", tier {}", d.priority)
            } else {
                String::new()
            };
            let _ = writeln!(
                text,
                "    - {} → {} ({provider}, {}, {}, {}{tier})",
                d.name, d.api_base, d.model_id, tpm, state
            );
        }
    }
    print_out(&text)
}
