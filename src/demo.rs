//! `switchboard demo`: the gateway on simulated upstreams, with generated
//! traffic, so that a newcomer sees routing, rate limits and failover within
//! seconds, with no keys and no network beyond loopback.
//!
//! Until the dashboard lands this prints the live traffic as lines.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::{Event, RequestEvent};
use crate::gateway::{self, Gateway};
use crate::mock_upstream::{self, MockHandle, MockOptions};

/// The demo stops generating traffic after this long or this many requests.
const MAX_DEMO_TIME: Duration = Duration::from_secs(3600);
const MAX_DEMO_REQUESTS: u64 = 200_000;

/// The simulated upstreams: address, latency, and how they misbehave.
struct SimUpstream {
    port: u16,
    latency_ms: u64,
    fail_rate: f64,
    /// The upstream's own limit, lower than the config's: it answers 429 in bursts.
    tpm_limit: Option<u64>,
}

const SIMS: &[SimUpstream] = &[
    SimUpstream {
        port: 47101,
        latency_ms: 250,
        fail_rate: 0.0,
        tpm_limit: None,
    },
    SimUpstream {
        port: 47102,
        latency_ms: 400,
        fail_rate: 0.0,
        tpm_limit: Some(9_000),
    },
    SimUpstream {
        port: 47103,
        latency_ms: 700,
        fail_rate: 0.25,
        tpm_limit: None,
    },
    SimUpstream {
        port: 47201,
        latency_ms: 20,
        fail_rate: 0.0,
        tpm_limit: None,
    },
    SimUpstream {
        port: 47202,
        latency_ms: 40,
        fail_rate: 0.0,
        tpm_limit: None,
    },
    SimUpstream {
        port: 47203,
        latency_ms: 30,
        fail_rate: 0.3,
        tpm_limit: None,
    },
];

pub const DEMO_CONFIG: &str = r#"# switchboard demo config: every api_base is a simulated upstream that
# `switchboard demo` starts on loopback. Toggle deployments and add
# fallbacks; the changes are written here.

[server]
listen = "127.0.0.1:4000"
request_timeout_s = 60
first_byte_timeout_s = 10

[[models]]
name = "gpt-4o"

[[models.deployments]]
name = "eastus"
api_base = "http://127.0.0.1:47101/v1"
api_key = "sk-demo-eastus-0001"
model_id = "gpt-4o-2024-08-06"
tpm_limit = 30000

[[models.deployments]]
name = "westeurope"            # its upstream enforces a lower limit: 429s in bursts
api_base = "http://127.0.0.1:47102/v1"
api_key = "sk-demo-westeu-0002"
model_id = "gpt-4o-2024-08-06"
tpm_limit = 20000

[[models.deployments]]
name = "sweden"                # flaky: a quarter of its answers are 500s
api_base = "http://127.0.0.1:47103/v1"
api_key = "sk-demo-sweden-0003"
model_id = "gpt-4o"
tpm_limit = 10000

[[models]]
name = "text-embedding-3-small"

[[models.deployments]]
name = "emb-a"
api_base = "http://127.0.0.1:47201/v1"
model_id = "text-embedding-3-small"

[[models.deployments]]
name = "emb-b"
api_base = "http://127.0.0.1:47202/v1"
model_id = "text-embedding-3-small"

[[models.deployments]]
name = "emb-c"                 # flaky
api_base = "http://127.0.0.1:47203/v1"
model_id = "text-embedding-3-small"
"#;

async fn start_upstreams() -> anyhow::Result<Vec<MockHandle>> {
    let mut handles = Vec::new();
    for (i, sim) in SIMS.iter().enumerate() {
        let addr = SocketAddr::from(([127, 0, 0, 1], sim.port));
        let mut opts = MockOptions::new(addr);
        opts.latency_ms = sim.latency_ms;
        opts.fail_rate = sim.fail_rate;
        opts.tpm_limit = sim.tpm_limit;
        opts.tokens = 60;
        opts.chunk_delay_ms = 15;
        opts.seed = Some(i as u64 + 1);
        let handle = mock_upstream::spawn(opts).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot start the simulated upstream on {addr}: {e} (is another demo running?)"
            )
        })?;
        handles.push(handle);
    }
    Ok(handles)
}

fn demo_config_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::temp_dir().join(format!("switchboard-demo-{}.toml", std::process::id())),
    };
    if !path.exists() {
        std::fs::write(&path, DEMO_CONFIG).map_err(|e| {
            anyhow::anyhow!("cannot write the demo config to {}: {e}", path.display())
        })?;
    }
    Ok(path)
}

pub async fn run(config: Option<PathBuf>, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let path = demo_config_path(config)?;
    let config = Config::load(&path)?;
    let _upstreams = start_upstreams().await?;
    let gateway = Gateway::new(&config)?;
    let stop = CancellationToken::new();
    let addr = gateway::spawn(
        gateway.clone(),
        listen.unwrap_or(config.server.listen),
        stop.clone(),
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {}: {e}",
            listen.unwrap_or(config.server.listen)
        )
    })?;
    println!(
        "switchboard demo: gateway on http://{addr}/v1, config {}",
        path.display()
    );
    println!("simulated upstreams on 127.0.0.1:47101-47203; Ctrl-C stops.\n");
    let mut events = gateway.events().subscribe();
    tokio::spawn(traffic(addr, stop.clone()));
    loop {
        tokio::select! {
            _ = crate::cli::shutdown_signal() => break,
            ev = events.recv() => match ev {
                Ok(ev) => print_event(&ev),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => println!("… {n} events skipped"),
                Err(_) => break,
            },
        }
    }
    stop.cancel();
    Ok(())
}

fn print_event(ev: &Event) {
    match ev {
        Event::Request(r) => println!("{}", traffic_line(r)),
        Event::Deployment(d) => println!("   ⚑ {} / {}: {:?}", d.model, d.deployment, d.change),
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
        "{:<24} {:<44} {:>3} {:>6.0}ms {:>5} tok{}",
        r.model,
        chain,
        r.status,
        r.latency_ms,
        r.prompt_tokens + r.completion_tokens,
        if r.stream { "  (stream)" } else { "" }
    )
}

/// Bursty traffic: a steady trickle with a burst every 20 seconds.
async fn traffic(addr: SocketAddr, stop: CancellationToken) {
    let client = reqwest::Client::new();
    let base = format!("http://{addr}/v1");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let started = tokio::time::Instant::now();
    for n in 0..MAX_DEMO_REQUESTS {
        if stop.is_cancelled() || started.elapsed() > MAX_DEMO_TIME {
            break;
        }
        let in_burst = started.elapsed().as_secs() % 20 < 4;
        let pause = if in_burst {
            40
        } else {
            rng.random_range(120..400)
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let (path, body) = if n % 3 == 2 {
            (
                "embeddings",
                serde_json::json!({"model": "text-embedding-3-small", "input": "the quick brown fox"}),
            )
        } else {
            let stream = rng.random_bool(0.5);
            (
                "chat/completions",
                serde_json::json!({
                    "model": "gpt-4o",
                    "stream": stream,
                    "max_tokens": 200,
                    "messages": [{"role": "user", "content": "Tell me about routing. ".repeat(rng.random_range(5..60))}],
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
