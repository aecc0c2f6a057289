//! The real binary in a real terminal: tmux runs `switchboard demo`, keys go
//! in with `send-keys`, the screen comes back with `capture-pane`. Each test
//! has its own tmux server, config file and ports, so they run in parallel.
//!
//! Needs tmux (CI installs it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use switchboard::mock_upstream::{self, MockOptions};

mod tmux;
use tmux::{DEADLINE, Tmux, table_has};

#[allow(dead_code)]
#[path = "common/agents.rs"]
mod agents;

/// `switchboard demo` on a fresh config in `dir`, the gateway on a free port.
fn demo(dir: &Path, width: u16, height: u16) -> (Tmux, PathBuf) {
    let config = dir.join("demo.toml");
    let command = format!(
        "SWITCHBOARD_LOG_DIR='{}' '{}' demo --config '{}' --listen 127.0.0.1:0",
        dir.join("logs").display(),
        env!("CARGO_BIN_EXE_switchboard"),
        config.display()
    );
    (Tmux::start(dir, &command, width, height), config)
}

/// The gateway's address, as the header shows it.
fn address(screen: &str) -> String {
    let start = screen
        .find("http://127.0.0.1:")
        .expect("the address in the header")
        + 7;
    let end = start + screen[start..].find("/v1").unwrap();
    screen[start..end].to_string()
}

/// GET a JSON path from the gateway, with nothing but std.
fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Requests routed to each deployment of gpt-4o so far.
fn requests(addr: &str) -> Vec<(String, u64)> {
    let state = get_json(addr, "/admin/state");
    state["models"][0]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["requests"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_demo_shows_every_pane_and_space_moves_traffic_off_a_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let (tmux, config) = demo(dir.path(), 120, 35);
    let screen = tmux.wait("the panes with traffic", |s| {
        s.contains("Models")
            && s.contains("Deployments · gpt-4o")
            && s.contains("Live traffic")
            && s.contains("text-embedding-3-small")
            && s.contains("✓")
    });
    // The header, the config's path, the gauges, the footer.
    assert!(
        screen.contains("demo") && screen.contains("req/s"),
        "{screen}"
    );
    assert!(screen.contains("demo.toml"), "{screen}");
    assert!(
        screen.contains("/30k") && screen.contains("/20k"),
        "{screen}"
    );
    assert!(
        screen.contains("? help") && screen.contains("q quit"),
        "{screen}"
    );
    let addr = address(&screen);
    let before = std::fs::read_to_string(&config).unwrap();
    assert!(!table_has(&before, "eastus", "enabled = false"));

    // Tab to the deployments, Space on the first (eastus).
    tmux.keys(&["Tab", "Space"]);
    tmux.wait_for("eastus disabled · saved to demo.toml");
    tmux.wait_for("[ ] eastus");
    let after = std::fs::read_to_string(&config).unwrap();
    assert!(table_has(&after, "eastus", "enabled = false"), "{after}");
    assert!(after.contains("# switchboard demo config"), "comments kept");

    // No new requests for eastus while the others keep taking traffic.
    let start = requests(&addr);
    let deadline = Instant::now() + DEADLINE;
    let now = loop {
        let now = requests(&addr);
        let others = |r: &[(String, u64)]| {
            r.iter()
                .filter(|(n, _)| n != "eastus")
                .map(|(_, c)| c)
                .sum::<u64>()
        };
        if others(&now) >= others(&start) + 5 {
            break now;
        }
        assert!(Instant::now() < deadline, "no traffic: {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(now[0], start[0], "eastus got traffic while disabled");

    // Space again puts it back.
    tmux.keys(&["Space"]);
    tmux.wait_for("eastus enabled · saved to demo.toml");
    let back = std::fs::read_to_string(&config).unwrap();
    assert!(table_has(&back, "eastus", "enabled = true"), "{back}");

    // Too small a window says so; larger again, the panes come back.
    tmux.cmd()
        .args(["resize-window", "-t", "t", "-x", "50", "-y", "12"])
        .status()
        .unwrap();
    tmux.wait_for("needs a terminal of at least");
    tmux.cmd()
        .args(["resize-window", "-t", "t", "-x", "80", "-y", "24"])
        .status()
        .unwrap();
    tmux.wait("everything at 80×24", |s| {
        s.contains("[x] westeurope")
            && s.contains("[x] sweden")
            && s.contains("Live traffic")
            && s.contains("q quit")
    });

    tmux.keys(&["q"]);
    tmux.wait_for("[exited 0]");
}

#[test]
fn the_form_adds_a_fallback_that_then_takes_traffic() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(async {
        let mut opts = MockOptions::new("127.0.0.1:0".parse().unwrap());
        opts.model = Some("fallback-model".into());
        opts.api_key = Some("sk-fallback-123456".into());
        mock_upstream::spawn(opts).await.unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    let (tmux, config) = demo(dir.path(), 120, 35);
    tmux.wait("the panes", |s| {
        s.contains("Deployments · gpt-4o") && s.contains("✓")
    });

    tmux.keys(&["a"]);
    tmux.wait_for("Add a fallback to gpt-4o");
    tmux.type_text("fallback");
    tmux.keys(&["Tab", "Tab"]); // the provider keeps its default
    tmux.type_text(&upstream.base_url());
    tmux.keys(&["Tab"]);
    tmux.type_text("sk-wrong-key");
    tmux.keys(&["Tab", "Tab", "Tab", "Tab", "Tab", "Enter"]);
    // A wrong key: the upstream's own error, and no Save.
    let screen = tmux.wait_for("HTTP 401");
    assert!(screen.contains("[ Test & continue ]"), "{screen}");
    assert!(
        !screen.contains("sk-wrong-key"),
        "the key is masked:\n{screen}"
    );

    // Back to the key, the right one; the TPM limit; tier 0, ahead of the
    // demo's deployments; test again.
    tmux.keys(&["BTab", "BTab", "BTab", "BTab", "BTab", "C-u"]);
    tmux.type_text("sk-fallback-123456");
    tmux.keys(&["Tab", "Tab"]);
    tmux.type_text("40000");
    tmux.keys(&["Tab"]);
    tmux.type_text("0");
    tmux.keys(&["Tab", "Tab", "Enter"]);
    let screen = tmux.wait_for("[ Save ]");
    assert!(screen.contains("model fallback-model"), "{screen}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("added fallback to gpt-4o");

    let text = std::fs::read_to_string(&config).unwrap();
    assert!(table_has(&text, "fallback", "tpm_limit = 40000"), "{text}");
    assert!(table_has(&text, "fallback", "priority = 0"), "{text}");
    assert!(
        table_has(
            &text,
            "fallback",
            &format!("api_base = \"{}\"", upstream.base_url())
        ),
        "{text}"
    );

    // It takes traffic: the upstream sees requests beyond the tests, the screen shows it answer.
    let deadline = Instant::now() + DEADLINE;
    while upstream.stats().ok < 6 {
        assert!(Instant::now() < deadline, "{:?}", upstream.stats());
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux.wait_for("fallback ✓");
    // The pane lists it first, in a tier of its own, selected.
    tmux.wait("the tiers", |s| {
        s.contains("▸ T0   [x] fallback") && s.contains("T1   [x] ")
    });
    tmux.keys(&["q"]);
    tmux.wait_for("[exited 0]");
    drop(rt);
}

#[test]
fn without_a_terminal_or_a_config_it_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&[]);
    assert!(!ok);
    assert!(
        err.contains("switchboard.toml")
            && err.contains("switchboard demo")
            && err.contains("switchboard init"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("switchboard.toml"),
        "[[models]]\nname = \"m\"\n[[models.deployments]]\nname = \"a\"\napi_base = \"http://127.0.0.1:1/v1\"\nmodel_id = \"x\"\n",
    )
    .unwrap();
    let (ok, err) = run(&[]);
    assert!(!ok);
    assert!(
        err.contains("needs a terminal") && err.contains("switchboard serve"),
        "{err}"
    );
    let (ok, err) = run(&["demo"]);
    assert!(!ok);
    assert!(err.contains("--headless"), "{err}");
}

/// PUTs a mode to a simulated upstream's control API.
fn put_mode(port: u16, mode: &str) {
    let addr = format!("127.0.0.1:{port}");
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "PUT /mock/mode HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{mode}",
        mode.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 204"), "{text}");
}

/// The port a deployment of the demo config points at.
fn port_of(config: &str, deployment: &str) -> u16 {
    let at = config.find(&format!("name = \"{deployment}\"")).unwrap();
    let base = &config[at..][config[at..].find("api_base = \"http://127.0.0.1:").unwrap() + 29..];
    base[..base.find(|c: char| !c.is_ascii_digit()).unwrap()]
        .parse()
        .unwrap()
}

/// The demo's claude model on Anthropic, Bedrock and Vertex: each one
/// throttled in turn shows as cooling down in the dashboard while the
/// others take the traffic.
#[test]
fn throttling_each_claude_provider_in_turn_shows_in_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let (tmux, config) = demo(dir.path(), 130, 40);
    tmux.wait_for("claude");
    let text = std::fs::read_to_string(&config).unwrap();
    tmux.keys(&["Down"]);
    tmux.wait_for("Deployments · claude");
    let throttle = r#"{"mode":"fail","status":429,"retry_after_s":600}"#;
    put_mode(port_of(&text, "anthropic-direct"), throttle);
    let screen = tmux.wait("anthropic-direct cooling down", |s| {
        s.lines()
            .any(|l| l.contains("anthropic-direct") && l.contains("cooling"))
    });
    assert!(
        screen
            .lines()
            .any(|l| l.contains("vertex-east5") && l.contains("healthy")),
        "{screen}"
    );
    put_mode(port_of(&text, "bedrock-east"), throttle);
    tmux.wait("bedrock-east cooling down too", |s| {
        s.lines()
            .any(|l| l.contains("bedrock-east") && l.contains("cooling"))
            && s.lines()
                .any(|l| l.contains("anthropic-direct") && l.contains("cooling"))
    });
    // The traffic pane shows requests still answered, by the one left.
    tmux.wait("vertex-east5 answering", |s| {
        s.lines()
            .any(|l| l.contains("claude") && l.contains("vertex-east5 ✓"))
    });
    tmux.keys(&["q"]);
}

/// Claude Code pointed at a gateway run with its dashboard: its requests
/// come in by the Messages door and show in the traffic pane as
/// `messages`, its session pinned on the deployment that served it.
#[test]
fn claude_code_through_the_gateway_shows_in_the_dashboard() {
    let Some(bin) = agents::agent("claude", "@anthropic-ai/claude-code") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = rt.block_on(async {
        let mut mocks = Vec::new();
        for _ in 0..2 {
            let mut opts = MockOptions::new("127.0.0.1:0".parse().unwrap());
            opts.provider = mock_upstream::MockProvider::Anthropic;
            opts.api_key = Some("sk-ant-test-0123456789".into());
            mocks.push(mock_upstream::spawn(opts).await.unwrap());
        }
        let b = mocks.pop().unwrap();
        (mocks.pop().unwrap(), b)
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let deployment = |name: &str, m: &mock_upstream::MockHandle| {
        format!(
            "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"anthropic\"\napi_base = \"{}\"\napi_key = \"sk-ant-test-0123456789\"\nmodel_id = \"claude-sonnet-4-5-20250929\"\n",
            m.base_url()
        )
    };
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[[models]]\nname = \"claude-sonnet-4-5\"\n{}{}",
            deployment("anthropic-a", &a),
            deployment("anthropic-b", &b)
        ),
    )
    .unwrap();
    let command = format!(
        "SWITCHBOARD_LOG_DIR='{}' '{}' --config '{}'",
        dir.path().join("logs").display(),
        env!("CARGO_BIN_EXE_switchboard"),
        config.display()
    );
    let tmux = Tmux::start(dir.path(), &command, 130, 40);
    tmux.wait_for("Deployments · claude-sonnet-4-5");
    let run = agents::claude_blocking(
        &bin,
        &format!("http://127.0.0.1:{port}"),
        "claude-sonnet-4-5",
        &["say hi"],
    );
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    tmux.wait("a messages row", |s| {
        s.lines()
            .any(|l| l.contains("claude-sonnet-4-5") && l.contains("messages") && l.contains('✓'))
    });
    // One session, pinned: the sess column of one deployment says 1.
    tmux.wait("the session pinned", |s| {
        s.contains("sess")
            && s.lines()
                .any(|l| l.contains("anthropic-") && l.contains("healthy") && l.contains("   1 "))
    });
    tmux.keys(&["/"]);
    tmux.type_text("messages");
    tmux.keys(&["Enter"]);
    tmux.wait_for("/messages");
    tmux.keys(&["q"]);
}
