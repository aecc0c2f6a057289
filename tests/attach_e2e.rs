//! `switchboard serve` and `switchboard attach` as an operator runs them:
//! the gateway as a process of its own, the dashboard in tmux from a folder
//! with no config, attached over the admin API. Keys go in with
//! `send-keys`, the screen comes back with `capture-pane`.
//!
//! Needs tmux (CI installs it).

mod serve;
mod tmux;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serve::{Serve, free_port};
use switchboard::mock_upstream::{self, MockHandle, MockOptions};
use tmux::{DEADLINE, Tmux, table_has};

const ADMIN_KEY: &str = "adm-e2e-0123456789abcdef";

fn mock(rt: &tokio::runtime::Runtime, model: &str) -> MockHandle {
    rt.block_on(async {
        let mut opts = MockOptions::new("127.0.0.1:0".parse().unwrap());
        opts.model = Some(model.into());
        mock_upstream::spawn(opts).await.unwrap()
    })
}

fn write_config(path: &Path, a: &MockHandle, b: &MockHandle) {
    let text = format!(
        "# the remote gateway's config\n[server]\nadmin_key = \"env:SB_ADMIN\"\n\n[[models]]\nname = \"gpt-4o\"\n\n[[models.deployments]]\nname = \"eastus\"\napi_base = \"{}\"\nmodel_id = \"gpt-4o\"\ntpm_limit = 60000\n\n[[models.deployments]]\nname = \"westus\"\napi_base = \"{}\"\nmodel_id = \"gpt-4o\"\ntpm_limit = 30000\n",
        a.base_url(),
        b.base_url()
    );
    std::fs::write(path, text).unwrap();
}

/// Requests to the gateway every 50 ms until stopped (at most 2,000).
fn traffic(rt: &tokio::runtime::Runtime, port: u16) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    rt.spawn(async move {
        let client = reqwest::Client::new();
        for _ in 0..2000 {
            if flag.load(Ordering::Relaxed) {
                break;
            }
            // While the gateway is down this fails; that is part of the test.
            let _ = client
                .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    stop
}

#[test]
fn attach_shows_a_remote_gateway_acts_on_it_and_survives_its_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (mock(&rt, "gpt-4o"), mock(&rt, "gpt-4o"));
    let fallback = mock(&rt, "fallback-model");
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let here = dir.path().join("laptop");
    std::fs::create_dir_all(&remote).unwrap();
    std::fs::create_dir_all(&here).unwrap();
    let config = remote.join("switchboard.toml");
    write_config(&config, &a, &b);
    let mut serve = Serve::start(&config, free_port(), ADMIN_KEY);
    let stop_traffic = traffic(&rt, serve.port);

    // A first run on a machine without a log folder yet: nothing on stderr.
    let state_home = dir.path().join("fresh-state").join("new");
    let command = format!(
        "cd '{}' && env -u SWITCHBOARD_LOG_DIR XDG_STATE_HOME='{}' SB_ADMIN='{ADMIN_KEY}' '{}' attach {} --admin-key env:SB_ADMIN 2>'{}'",
        here.display(),
        state_home.display(),
        env!("CARGO_BIN_EXE_switchboard"),
        serve.url(),
        dir.path().join("stderr.txt").display(),
    );
    let tmux = Tmux::start(dir.path(), &command, 120, 35);
    let screen = tmux.wait("the panes with live traffic", |s| {
        s.contains("● live")
            && s.contains("Deployments · gpt-4o")
            && s.contains("eastus ✓")
            && s.contains("westus ✓")
    });
    assert!(
        screen.contains(&serve.url()),
        "the header names the gateway:\n{screen}"
    );
    assert!(
        screen.contains("/60k") && screen.contains("/30k"),
        "{screen}"
    );
    assert!(
        screen.contains("switchboard.toml"),
        "the remote's config:\n{screen}"
    );
    assert!(!screen.contains(ADMIN_KEY), "never the key:\n{screen}");

    // Space on eastus: the remote's config file changes, traffic moves.
    tmux.keys(&["Tab", "Space"]);
    tmux.wait_for("eastus disabled · saved to switchboard.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(table_has(&text, "eastus", "enabled = false"), "{text}");
    assert!(
        text.contains("# the remote gateway's config"),
        "comments kept"
    );
    tmux.wait_for("[ ] eastus");

    // t tests the selected deployment through the gateway.
    tmux.keys(&["Down", "t"]);
    tmux.wait_for("test westus: ✓");

    // The form adds a fallback on the remote: Test & continue, then Save.
    tmux.keys(&["a"]);
    tmux.wait_for("Add a fallback to gpt-4o");
    tmux.type_text("fallback");
    tmux.keys(&["Tab", "Tab"]);
    tmux.type_text(&fallback.base_url());
    tmux.keys(&["Tab", "Tab"]);
    // The suggested model ID is replaced by what is typed.
    tmux.type_text("fallback-model");
    // TPM limit, priority and enabled keep their defaults.
    tmux.keys(&["Tab", "Tab", "Tab", "Tab", "Enter"]);
    let screen = tmux.wait_for("[ Save ]");
    assert!(screen.contains("model fallback-model"), "{screen}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("added fallback to gpt-4o");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        table_has(&text, "fallback", "model_id = \"fallback-model\""),
        "{text}"
    );
    tmux.wait_for("fallback ✓");

    // The gateway goes away: shown, retried, never a crash.
    serve.kill();
    tmux.wait_for("○ reconnecting");
    serve.restart();
    let screen = tmux.wait("live again after the restart", |s| {
        s.contains("● live") && s.contains("events missed")
    });
    assert!(screen.contains("the gateway restarted"), "{screen}");
    // The panes go on with the new gateway's traffic (it kept the fallback).
    let deadline = Instant::now() + DEADLINE;
    let before = fallback.stats().ok;
    while fallback.stats().ok < before + 3 {
        assert!(Instant::now() < deadline, "no traffic after the restart");
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux.wait_for("fallback ✓");

    tmux.keys(&["q"]);
    tmux.wait_for("[exited 0]");
    stop_traffic.store(true, Ordering::Relaxed);

    let stderr = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap();
    assert_eq!(stderr, "", "nothing printed over the dashboard");
    let logs: Vec<_> = std::fs::read_dir(state_home.join("switchboard"))
        .expect("the log folder was made")
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
}

#[test]
fn attach_with_a_wrong_key_or_no_gateway_exits_at_once_with_one_line() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (mock(&rt, "gpt-4o"), mock(&rt, "gpt-4o"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    write_config(&config, &a, &b);
    let serve = Serve::start(&config, free_port(), ADMIN_KEY);
    let run = |args: &[&str]| {
        let started = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("attach")
            .args(args)
            .env_remove("SWITCHBOARD_ADMIN_KEY")
            .env("SB_WRONG", "adm-wrong-0123456789")
            .output()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(8));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        (out.status.code(), err)
    };
    let (code, err) = run(&[&serve.url(), "--admin-key", "env:SB_WRONG"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("refused the admin key") && !err.contains("adm-wrong"),
        "{err}"
    );
    let (code, err) = run(&[&serve.url()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("needs the admin key"), "{err}");
    let (code, err) = run(&[&serve.url(), "--admin-key", "env:SB_NOT_SET"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("SB_NOT_SET"), "{err}");
    let (code, err) = run(&[&format!("127.0.0.1:{}", free_port()), "--admin-key", "x"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cannot reach") && err.contains("connection refused"),
        "{err}"
    );
}
