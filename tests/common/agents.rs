//! The coding agents themselves (Claude Code, Codex CLI from npm), run as
//! a user runs them, offline against a gateway on loopback.

use std::path::{Path, PathBuf};

/// Where `.ci/run` installs the agents (`npm install --prefix`).
pub fn agents_prefix() -> PathBuf {
    match std::env::var_os("SWITCHBOARD_AGENTS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/switchboard/agents"),
    }
}

/// The agent's executable: from the CI prefix, else on PATH. Outside CI a
/// test says it is missing and passes; in CI (CI=true) that is a failure.
pub fn agent(bin: &str, package: &str) -> Option<PathBuf> {
    let installed = agents_prefix().join("node_modules/.bin").join(bin);
    let found = if installed.exists() {
        Some(installed)
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(bin))
                .find(|p| p.exists())
        })
    };
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have {package} installed (.ci/run installs it)"
        );
        eprintln!(
            "SKIPPED: {bin} not found; npm install --prefix {} {package}",
            agents_prefix().display()
        );
    }
    found
}

/// What one run of an agent printed.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs Claude Code in print mode against `base_url`, with a fresh HOME
/// and every call home turned off; `args` after `-p`.
pub async fn claude(bin: &Path, base_url: &str, model: &str, args: &[&str]) -> Run {
    let (bin, base_url, model) = (bin.to_path_buf(), base_url.to_string(), model.to_string());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        claude_blocking(&bin, &base_url, &model, &args)
    })
    .await
    .unwrap()
}

/// [`claude`], for tests without a runtime.
pub fn claude_blocking(bin: &Path, base_url: &str, model: &str, args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    // coreutils' timeout bounds the run: a hung agent cannot hang the suite.
    let mut cmd = std::process::Command::new("timeout");
    cmd.arg("120")
        .arg(bin)
        .arg("-p")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", base_url)
        .env("ANTHROPIC_API_KEY", "sk-client-key-123456")
        .env("ANTHROPIC_MODEL", model)
        .env("ANTHROPIC_SMALL_FAST_MODEL", model)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .current_dir(home.path())
        .stdin(std::process::Stdio::null());
    let output = cmd.output().expect("claude runs");
    drop(home);
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs Codex CLI (`codex exec`) against `base_url` (the gateway's `/v1`)
/// as a custom Responses provider, with a fresh HOME and its calls home
/// (analytics, plugins, apps, update checks) turned off; `prompt` as the task.
pub fn codex_blocking(bin: &Path, base_url: &str, model: &str, prompt: &str) -> Run {
    let home = tempfile::tempdir().unwrap();
    let codex_home = home.path().join(".codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    std::fs::write(
        codex_home.join("config.toml"),
        format!(
            "model = \"{model}\"\nmodel_provider = \"switchboard\"\ncheck_for_update_on_startup = false\n\n[model_providers.switchboard]\nname = \"switchboard\"\nbase_url = \"{base_url}\"\nwire_api = \"responses\"\nenv_key = \"SWITCHBOARD_KEY\"\n\n[analytics]\nenabled = false\n\n[features]\nplugins = false\nremote_plugin = false\napps = false\n"
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new("timeout");
    cmd.arg("120")
        .arg(bin)
        .args(["exec", "--skip-git-repo-check", "-s", "read-only", prompt])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CODEX_HOME", &codex_home)
        .env("SWITCHBOARD_KEY", "sk-client-key-123456")
        .current_dir(home.path())
        .stdin(std::process::Stdio::null());
    let output = cmd.output().expect("codex runs");
    drop(home);
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
