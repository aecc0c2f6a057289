//! `switchboard demo`: the gateway on simulated upstreams, with generated
//! traffic, so that a newcomer sees routing, rate limits and failover within
//! seconds, with no keys and no network beyond loopback.
//!
//! It runs the dashboard; `--headless` prints one line per request instead.
//! The simulated upstreams listen on free loopback ports, written into a
//! fresh demo config; a demo config that exists already is honoured, its
//! upstreams started on the ports it names.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dashboard;
use crate::events::{Event, RequestEvent};
use crate::gateway::Gateway;
use crate::mock_upstream::{self, MockHandle, MockOptions, MockProvider};

/// The demo stops generating traffic after this long or this many requests.
const MAX_DEMO_TIME: Duration = Duration::from_secs(3600);
const MAX_DEMO_REQUESTS: u64 = 200_000;

/// A simulated upstream: which deployment it stands for, and how it misbehaves.
struct SimUpstream {
    model: &'static str,
    deployment: &'static str,
    latency_ms: u64,
    fail_rate: f64,
    /// The upstream's own limit, lower than the config's: it answers 429 in bursts.
    tpm_limit: Option<u64>,
    /// The API it speaks.
    provider: MockProvider,
}

const SIMS: &[SimUpstream] = &[
    SimUpstream {
        model: "gpt-4o",
        deployment: "eastus",
        latency_ms: 250,
        fail_rate: 0.0,
        tpm_limit: None,
        provider: MockProvider::Openai,
    },
    SimUpstream {
        model: "gpt-4o",
        deployment: "westeurope",
        latency_ms: 400,
        fail_rate: 0.0,
        tpm_limit: Some(4_000),
        provider: MockProvider::Openai,
    },
    SimUpstream {
        model: "gpt-4o",
        deployment: "sweden",
        latency_ms: 700,
        fail_rate: 0.35,
        tpm_limit: None,
        provider: MockProvider::Openai,
    },
    SimUpstream {
        model: "gpt-4o",
        deployment: "anthropic",
        latency_ms: 350,
        fail_rate: 0.0,
        tpm_limit: Some(6_000),
        provider: MockProvider::Anthropic,
    },
    SimUpstream {
        model: "claude",
        deployment: "anthropic-direct",
        latency_ms: 300,
        fail_rate: 0.0,
        tpm_limit: Some(5_000),
        provider: MockProvider::Anthropic,
    },
    SimUpstream {
        model: "claude",
        deployment: "bedrock-east",
        latency_ms: 450,
        fail_rate: 0.0,
        tpm_limit: Some(2_000),
        provider: MockProvider::Bedrock,
    },
    SimUpstream {
        model: "claude",
        deployment: "vertex-east5",
        latency_ms: 380,
        fail_rate: 0.05,
        tpm_limit: None,
        provider: MockProvider::Vertex,
    },
    SimUpstream {
        model: "text-embedding-3-small",
        deployment: "emb-a",
        latency_ms: 20,
        fail_rate: 0.0,
        tpm_limit: None,
        provider: MockProvider::Openai,
    },
    SimUpstream {
        model: "text-embedding-3-small",
        deployment: "emb-b",
        latency_ms: 40,
        fail_rate: 0.0,
        tpm_limit: None,
        provider: MockProvider::Openai,
    },
    SimUpstream {
        model: "text-embedding-3-small",
        deployment: "emb-c",
        latency_ms: 30,
        fail_rate: 0.3,
        tpm_limit: None,
        provider: MockProvider::Openai,
    },
];

/// The demo's config; `{eastus}` and the like stand for the ports of the
/// simulated upstreams, chosen free when the demo starts.
const DEMO_CONFIG: &str = r#"# switchboard demo config: every api_base is a simulated upstream that
# `switchboard demo` starts on loopback (on these ports again when it is run
# with --config on this file). Toggle deployments and add fallbacks; the
# changes are written here.

[server]
listen = "127.0.0.1:4000"
request_timeout_s = 60
first_byte_timeout_s = 10

[[models]]
name = "gpt-4o"

[[models.deployments]]
name = "eastus"
api_base = "http://127.0.0.1:{eastus}/v1"
api_key = "sk-demo-eastus-0001"
model_id = "gpt-4o-2024-08-06"
tpm_limit = 30000

[[models.deployments]]
name = "westeurope"            # its upstream enforces a lower limit: 429s in bursts
api_base = "http://127.0.0.1:{westeurope}/v1"
api_key = "sk-demo-westeu-0002"
model_id = "gpt-4o-2024-08-06"
tpm_limit = 20000

[[models.deployments]]
name = "sweden"                # flaky: a third of its answers are 500s
api_base = "http://127.0.0.1:{sweden}/v1"
api_key = "sk-demo-sweden-0003"
model_id = "gpt-4o"
tpm_limit = 10000

[[models.deployments]]
name = "anthropic"             # another provider: Anthropic's Messages API, translated both ways
provider = "anthropic"
api_base = "http://127.0.0.1:{anthropic}"
api_key = "sk-ant-demo-0004"
model_id = "claude-sonnet-4-5"
tpm_limit = 15000

[[models]]
name = "claude"                # one Claude model three ways: Anthropic, Bedrock, Vertex AI;
                               # limits with room for Claude Code (ANTHROPIC_MODEL=claude), which
                               # reserves its max_tokens (32000) on every turn

[[models.deployments]]
name = "anthropic-direct"
provider = "anthropic"
api_base = "http://127.0.0.1:{anthropic-direct}"
api_key = "sk-ant-demo-0005"
model_id = "claude-sonnet-4-5"
tpm_limit = 120000

[[models.deployments]]
name = "bedrock-east"          # SigV4-signed; its upstream throttles (ThrottlingException)
provider = "bedrock"
region = "us-east-1"
api_base = "http://127.0.0.1:{bedrock-east}"
aws_access_key_id = "AKIADEMO0000000000001"
aws_secret_access_key = "demo-secret-access-key-0006"
model_id = "anthropic.claude-sonnet-4-5-20250929-v1:0"
tpm_limit = 80000

[[models.deployments]]
name = "vertex-east5"          # an OAuth token from the service-account file the demo writes
provider = "vertex"
project = "mock-project"
region = "us-east5"
api_base = "http://127.0.0.1:{vertex-east5}"
credentials = "file:{vertex-credentials}"
model_id = "claude-sonnet-4-5@20250929"
tpm_limit = 80000

[[models]]
name = "text-embedding-3-small"

[[models.deployments]]
name = "emb-a"
api_base = "http://127.0.0.1:{emb-a}/v1"
model_id = "text-embedding-3-small"

[[models.deployments]]
name = "emb-b"
api_base = "http://127.0.0.1:{emb-b}/v1"
model_id = "text-embedding-3-small"

[[models.deployments]]
name = "emb-c"                 # flaky
api_base = "http://127.0.0.1:{emb-c}/v1"
model_id = "text-embedding-3-small"
"#;

/// The demo's simulated Bedrock accepts these keys (those of its config).
const DEMO_AWS_KEY_ID: &str = "AKIADEMO0000000000001";
const DEMO_AWS_SECRET: &str = "demo-secret-access-key-0006";

/// The demo config with the simulated upstreams on `ports` (in `SIMS`
/// order), and the Vertex deployment's service-account file named.
pub fn demo_config(ports: &[u16], vertex_credentials: &str) -> String {
    SIMS.iter()
        .zip(ports)
        .fold(DEMO_CONFIG.to_string(), |text, (sim, port)| {
            text.replace(&format!("{{{}}}", sim.deployment), &port.to_string())
        })
        .replace("{vertex-credentials}", vertex_credentials)
}

/// Where the simulated Vertex writes its service-account file: next to the
/// demo config, named after it.
fn credentials_path(config: &Path) -> PathBuf {
    let mut name = config.file_stem().unwrap_or_default().to_os_string();
    name.push("-vertex-sa.json");
    config.with_file_name(name)
}

async fn start_upstream(
    i: usize,
    sim: &SimUpstream,
    port: u16,
    config: &Path,
) -> anyhow::Result<MockHandle> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut opts = MockOptions::new(addr);
    opts.latency_ms = sim.latency_ms;
    opts.fail_rate = sim.fail_rate;
    opts.tpm_limit = sim.tpm_limit;
    opts.tokens = 60;
    opts.chunk_delay_ms = 15;
    opts.seed = Some(i as u64 + 1);
    opts.provider = sim.provider;
    match sim.provider {
        MockProvider::Bedrock => {
            opts.aws_access_key_id = Some(DEMO_AWS_KEY_ID.into());
            opts.aws_secret_access_key = Some(DEMO_AWS_SECRET.into());
        }
        // Rewritten on every start: its token_uri names this run's port.
        MockProvider::Vertex => opts.write_credentials = Some(credentials_path(config)),
        _ => {}
    }
    mock_upstream::spawn(opts).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot start the simulated upstream `{}` on {addr}: {e} (is another demo running on this config?)",
            sim.deployment
        )
    })
}

/// The port a demo config gives a simulated deployment, when it still
/// points at loopback.
fn sim_port(config: &Config, sim: &SimUpstream) -> Option<u16> {
    let d = config
        .models
        .iter()
        .find(|m| m.name == sim.model)?
        .deployments
        .iter()
        .find(|d| d.name == sim.deployment)?;
    let rest = d.api_base.strip_prefix("http://127.0.0.1:")?;
    rest.split('/').next()?.parse().ok()
}

/// The loopback port of deployment `name` in the config at `path`, read
/// without validating the rest.
fn raw_port(path: &Path, name: &str) -> Option<u16> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: toml::Value = toml::from_str(&text).ok()?;
    let base = value
        .get("models")?
        .as_array()?
        .iter()
        .filter_map(|m| m.get("deployments")?.as_array())
        .flatten()
        .find(|d| d.get("name").and_then(|n| n.as_str()) == Some(name))?
        .get("api_base")?
        .as_str()?;
    base.strip_prefix("http://127.0.0.1:")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// The demo's config and its simulated upstreams: a fresh config with
/// upstreams on free ports, or an existing one with its upstreams on the
/// ports it names.
async fn prepare(given: Option<PathBuf>) -> anyhow::Result<(PathBuf, Config, Vec<MockHandle>)> {
    let path = given.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("switchboard-demo-{}.toml", std::process::id()))
    });
    let mut upstreams = Vec::new();
    if path.exists() {
        // The simulated Vertex writes the service-account file its
        // deployment names, and the config does not load without it: it
        // starts first, on the port the file gives it.
        let vertex = SIMS.iter().position(|s| s.provider == MockProvider::Vertex);
        let early = match vertex.and_then(|i| Some((i, raw_port(&path, SIMS[i].deployment)?))) {
            Some((i, port)) => Some((i, start_upstream(i, &SIMS[i], port, &path).await?)),
            None => None,
        };
        let config = Config::load(&path)?;
        for (i, sim) in SIMS.iter().enumerate() {
            if early.as_ref().is_some_and(|(j, _)| *j == i) {
                continue;
            }
            if let Some(port) = sim_port(&config, sim) {
                upstreams.push(start_upstream(i, sim, port, &path).await?);
            }
        }
        upstreams.extend(early.map(|(_, h)| h));
        if upstreams.is_empty() {
            anyhow::bail!(
                "{} is not a demo config: none of its deployments is one of the demo's simulated upstreams, and the demo does not send generated traffic elsewhere. Run the dashboard on it with `switchboard --config {}`, or give the demo a new file.",
                path.display(),
                path.display()
            );
        }
        return Ok((path, config, upstreams));
    }
    let mut ports = Vec::new();
    for (i, sim) in SIMS.iter().enumerate() {
        let handle = start_upstream(i, sim, 0, &path).await?;
        ports.push(handle.addr.port());
        upstreams.push(handle);
    }
    let credentials = credentials_path(&path);
    let credentials = credentials
        .file_name()
        .unwrap_or_default()
        .to_string_lossy();
    write_new(&path, &demo_config(&ports, &credentials))?;
    let config = Config::load(&path)?;
    Ok((path, config, upstreams))
}

fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot write the demo config to {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// How the demo shows itself.
pub enum View {
    /// The dashboard in this terminal; the log goes to this file.
    Dashboard { log_path: Option<PathBuf> },
    /// One printed line per request.
    Lines,
}

pub async fn run(
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    view: View,
) -> anyhow::Result<()> {
    let (path, config, _upstreams) = prepare(config).await?;
    let gateway = Gateway::new(&config)?;
    let listener = match listen {
        Some(addr) => TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?,
        // The demo should start whatever else uses the usual port.
        None => match TcpListener::bind(config.server.listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(
                    "{} is taken ({e}); listening on a free port",
                    config.server.listen
                );
                TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?
            }
        },
    };
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    tokio::spawn(traffic(addr, stop.clone()));
    let shown_path = std::path::absolute(&path).unwrap_or(path);
    let result = match view {
        View::Dashboard { log_path } => {
            let info = dashboard::Info {
                config_path: shown_path.display().to_string(),
                address: format!("http://{addr}/v1"),
                log_path: log_path.map(|p| p.display().to_string()),
                demo: true,
                attached: None,
                warning: None,
            };
            let r = dashboard::serve_with_dashboard(gateway, listener, info).await;
            if r.is_ok() {
                let _ = writeln!(
                    std::io::stdout(),
                    "switchboard demo stopped; its config stays at {}",
                    shown_path.display()
                );
            }
            r
        }
        View::Lines => print_lines(gateway, listener, &shown_path, stop.clone()).await,
    };
    stop.cancel();
    result
}

async fn print_lines(
    gateway: Gateway,
    listener: TcpListener,
    path: &Path,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let mut events = gateway.events().subscribe();
    {
        let (gateway, stop) = (gateway.clone(), stop.clone());
        tokio::spawn(async move {
            let _ = gateway
                .serve(listener, async move { stop.cancelled().await })
                .await;
        });
    }
    let _ = writeln!(
        std::io::stdout(),
        "switchboard demo: gateway on http://{addr}/v1, config {}\nsimulated upstreams on loopback; Ctrl-C stops.\n",
        path.display()
    );
    loop {
        tokio::select! {
            _ = crate::shutdown::signal() => break,
            ev = events.recv() => {
                let printed = match ev {
                    Ok(ev) => print_event(&ev),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        writeln!(std::io::stdout(), "… {n} events skipped")
                    }
                    Err(_) => break,
                };
                // A closed pipe (`| head`) ends the demo quietly.
                if printed.is_err() {
                    break;
                }
            }
        }
    }
    Ok(())
}

fn print_event(ev: &Event) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match ev {
        Event::Request(r) => writeln!(out, "{}", traffic_line(r)),
        Event::Deployment(d) => writeln!(
            out,
            "   ⚑ {} / {}: {}",
            d.model,
            d.deployment,
            crate::dashboard::app::change_word(&d.change)
        ),
        Event::Route(r) => writeln!(out, "   {}", r.describe()),
        Event::Config(c) if c.applied => writeln!(out, "   ⚙ config reloaded: {}", c.message),
        Event::Config(c) => writeln!(out, "   ⚙ config not reloaded: {}", c.message),
        Event::Lagged(l) => writeln!(out, "   … {}", l.describe()),
    }
}

/// `gpt-4o  eastus ✗429 → westeurope ✓  200  412ms  230 tok`
pub fn traffic_line(r: &RequestEvent) -> String {
    let chain = r
        .attempts
        .iter()
        .map(|a| format!("{} {}", a.deployment, a.outcome.label()))
        .collect::<Vec<_>>()
        .join(" → ");
    format!(
        "{:<24} {:<44} {:>3} {:>6.0}ms {:>5} tok{}{}",
        r.model,
        chain,
        r.status,
        r.latency_ms,
        r.prompt_tokens + r.completion_tokens,
        if r.stream { "  (stream)" } else { "" },
        // Chat is the usual door; the others are named.
        match r.door() {
            "chat" => String::new(),
            door => format!("  [{door}]"),
        }
    )
}

/// Bursty traffic: a steady trickle (about 60 % of the chat model's TPM)
/// with a burst every 20 seconds, and a longer one at the start, so that
/// within seconds westeurope's upstream answers 429 and traffic fails over.
async fn traffic(addr: SocketAddr, stop: CancellationToken) {
    let client = reqwest::Client::new();
    let base = format!("http://{addr}/v1");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let started = tokio::time::Instant::now();
    for n in 0..MAX_DEMO_REQUESTS {
        if stop.is_cancelled() || started.elapsed() > MAX_DEMO_TIME {
            break;
        }
        let elapsed = started.elapsed().as_secs();
        let in_burst = elapsed < 5 || elapsed % 20 < 3;
        let pause = if in_burst {
            45
        } else {
            rng.random_range(120..400)
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let (path, body) = if n % 4 == 3 {
            (
                "embeddings",
                serde_json::json!({"model": "text-embedding-3-small", "input": "the quick brown fox"}),
            )
        } else {
            let stream = rng.random_bool(0.5);
            (
                "chat/completions",
                serde_json::json!({
                    // Half the traffic on gpt-4o, a quarter on claude.
                    "model": if n % 4 == 2 { "claude" } else { "gpt-4o" },
                    "stream": stream,
                    "max_tokens": 100,
                    "messages": [{"role": "user", "content": "Tell me about routing. ".repeat(rng.random_range(5..30))}],
                }),
            )
        };
        let request = client
            .post(format!("{base}/{path}"))
            .header("content-type", "application/json")
            .body(body.to_string());
        tokio::spawn(async move {
            if let Ok(r) = request.send().await {
                let _ = r.bytes().await;
            }
        });
    }
}
