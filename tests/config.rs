//! The config file on real files: loading and its error messages, secret
//! resolution, the example config, and the program's own edits.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use switchboard::config::persist::{self, PersistError};
use switchboard::config::{
    Config, ConfigError, DeploymentSpec, EXAMPLE_CONFIG, KeySource, Provider,
};

/// Appears as a literal key in configs that fail: no error may show it.
const LEAKABLE: &str = "sk-literal-DO-NOT-LEAK-0123456789";

fn set_env(name: &str, value: &str) {
    // SAFETY: std serializes its own environment accesses; these tests run
    // no foreign code that reads the environment, and each test uses its
    // own variable names.
    unsafe { std::env::set_var(name, value) };
}

/// Writes `text` as `switchboard.toml` in a fresh folder.
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    fs::write(&path, text).unwrap();
    (dir, path)
}

fn load(text: &str) -> Result<Config, ConfigError> {
    let (_dir, path) = config_file(text);
    Config::load(&path)
}

/// The 1-based line of the first (or, with `nth`, a later) line holding `needle`.
fn line_with(text: &str, needle: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
}

/// Loads `text`, expects an error at `line` in `field` whose message holds
/// `says`, and checks that no literal key leaks into it.
fn expect_error(text: &str, line: usize, field: &str, says: &str) -> ConfigError {
    let (_dir, path) = config_file(text);
    let err = Config::load(&path).expect_err("the config is invalid");
    let shown = err.to_string();
    assert_eq!(err.line, Some(line), "{shown}");
    assert_eq!(err.field.as_deref(), Some(field), "{shown}");
    assert!(err.message.contains(says), "{shown}");
    assert!(
        shown.starts_with(&format!("{}:{line}: {field}: ", path.display())),
        "{shown}"
    );
    assert!(!shown.contains('\n'), "one paragraph: {shown}");
    assert_no_leak(&err);
    err
}

fn assert_no_leak(err: &ConfigError) {
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("DO-NOT-LEAK"), "{shown}");
    }
}

/// One model with one deployment, the deployment's extra lines appended.
fn one_deployment(extra: &str) -> String {
    format!(
        "[[models]]\nname = \"gpt-4o\"\n\n[[models.deployments]]\nname = \"east\"\napi_base = \"http://127.0.0.1:9001/v1\"\napi_key = \"{LEAKABLE}\"\nmodel_id = \"gpt-4o\"\n{extra}\n"
    )
}

// ---------------------------------------------------------------- loading

#[test]
fn a_full_config_loads_with_its_values() {
    let text = format!(
        r#"
[server]
listen = "[::1]:4100"
api_keys = ["{LEAKABLE}", "client-two-key"]
admin_key = "admin-key-0000"
request_timeout_s = 2.5
first_byte_timeout_s = 7
max_body_mb = 0.5
workers = 3

[routing]
failure_threshold = 2
cooldown_s = 0.25
max_cooldown_s = 60
rate_limit_cooldown_s = 9

[[models]]
name = "gpt-4o"

[[models.deployments]]
name = "azure"
provider = "azure"
api_base = "https://example.openai.azure.com/openai/v1/"
api_key = "azure-key-123456789"
model_id = "gpt-4o-2024-08-06"
tpm_limit = 450000
enabled = false

[[models.deployments]]
name = "local"
api_base = "http://127.0.0.1:8000/v1"
model_id = "qwen"
"#
    );
    let config = load(&text).unwrap();
    let server = &config.server;
    assert_eq!(server.listen, "[::1]:4100".parse().unwrap());
    assert_eq!(server.api_keys.len(), 2);
    assert_eq!(server.api_keys[0].expose(), LEAKABLE);
    assert_eq!(
        server.admin_key.as_ref().unwrap().expose(),
        "admin-key-0000"
    );
    assert_eq!(server.request_timeout, Duration::from_millis(2500));
    assert_eq!(server.first_byte_timeout, Duration::from_secs(7));
    assert_eq!(server.max_body_bytes, 512 * 1024);
    assert_eq!(server.workers, 3);
    assert_eq!(config.routing.failure_threshold, 2);
    assert_eq!(config.routing.cooldown, Duration::from_millis(250));
    assert_eq!(config.routing.max_cooldown, Duration::from_secs(60));
    assert_eq!(config.routing.rate_limit_cooldown, Duration::from_secs(9));

    let model = config.model("gpt-4o").unwrap();
    let azure = &model.deployments[0];
    assert_eq!(azure.provider, Provider::Azure);
    assert_eq!(azure.api_base, "https://example.openai.azure.com/openai/v1");
    assert_eq!(azure.tpm_limit, Some(450_000));
    assert!(!azure.enabled);
    let local = &model.deployments[1];
    assert_eq!(local.provider, Provider::OpenAi);
    assert!(local.api_key.is_none() && local.tpm_limit.is_none() && local.enabled);
    assert!(config.model("gpt-5").is_none());
    // Debug output shows masks only.
    assert!(!format!("{config:?}").contains("DO-NOT-LEAK"));
}

#[test]
fn empty_config_and_empty_model_are_valid() {
    let config = load("").unwrap();
    assert!(config.models.is_empty());
    assert_eq!(config.server.listen, "127.0.0.1:4000".parse().unwrap());
    assert_eq!(config.server.request_timeout, Duration::from_secs(600));
    assert_eq!(config.server.first_byte_timeout, Duration::from_secs(60));
    assert_eq!(config.server.max_body_bytes, 32 * 1024 * 1024);
    assert_eq!(config.routing.failure_threshold, 3);
    assert_eq!(config.routing.max_cooldown, Duration::from_secs(300));

    let config = load("[[models]]\nname = \"later\"\n").unwrap();
    assert!(config.models[0].deployments.is_empty());
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let err = Config::load(&path).unwrap_err();
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
    assert!(err.message.contains("cannot read"), "{err}");
}

#[test]
fn syntax_errors_give_the_line_without_quoting_it() {
    let text = one_deployment("tpm_limit = = 5");
    let (_dir, path) = config_file(&text);
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.line, Some(line_with(&text, "tpm_limit", 0)), "{err}");
    assert!(err.message.contains("invalid TOML"), "{err}");
    assert_no_leak(&err);

    // An unterminated string on the line of a key.
    let text = format!("[server]\nadmin_key = \"{LEAKABLE}\n");
    let (_dir, path) = config_file(&text);
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.line, Some(2), "{err}");
    assert_no_leak(&err);
}

#[test]
fn unknown_fields_are_errors_everywhere() {
    let text = format!(
        "{}\n[[models.deployments]]\nname = \"west\"\napi_base = \"http://127.0.0.1:9002\"\nmodel_id = \"m\"\ntpm_limt = 5\n",
        one_deployment("")
    );
    let err = expect_error(
        &text,
        line_with(&text, "tpm_limt", 0),
        "models[0].deployments[1].tpm_limt",
        "unknown field; expected one of name, provider, api_base, api_version, api_key, model_id, tpm_limit, enabled",
    );
    assert!(err.to_string().contains("switchboard.toml:"), "{err}");

    expect_error(
        "titel = \"x\"\n",
        1,
        "titel",
        "unknown field; expected one of server, routing, cluster, models",
    );
    expect_error(
        "[server]\nlisten = \"127.0.0.1:1\"\nport = 4\n",
        3,
        "server.port",
        "unknown field",
    );
    expect_error(
        "[routing]\ncooldown = 4\n",
        2,
        "routing.cooldown",
        "unknown field",
    );
    expect_error(
        "[[models]]\nname = \"a\"\ndeployment = []\n",
        3,
        "models[0].deployment",
        "unknown field; expected one of name, fallbacks, context_window_fallbacks",
    );
    // Inline tables too.
    let text = "[[models]]\nname = \"a\"\ndeployments = [\n  { name = \"x\", api_base = \"http://h\", model_id = \"m\", colour = 1 },\n]\n";
    expect_error(text, 4, "models[0].deployments[0].colour", "unknown field");
}

#[test]
fn missing_required_fields_are_named() {
    let text = "[[models]]\nname = \"a\"\n\n[[models.deployments]]\nname = \"x\"\napi_base = \"http://h\"\n";
    expect_error(text, 4, "models[0].deployments[0].model_id", "is required");
}

#[test]
fn model_names_are_unique() {
    let text = "[[models]]\nname = \"gpt-4o\"\n\n[[models]]\nname = \"mini\"\n\n[[models]]\nname = \"gpt-4o\"\n";
    expect_error(
        text,
        line_with(text, "gpt-4o", 1),
        "models[2].name",
        "already defined",
    );
}

#[test]
fn deployment_names_are_unique_within_a_model_only() {
    let dup = one_deployment("")
        + "\n[[models.deployments]]\nname = \"east\"\napi_base = \"http://h\"\nmodel_id = \"m\"\n";
    expect_error(
        &dup,
        line_with(&dup, "\"east\"", 1),
        "models[0].deployments[1].name",
        "already defined",
    );

    let other_model = one_deployment("")
        + "\n[[models]]\nname = \"mini\"\n[[models.deployments]]\nname = \"east\"\napi_base = \"http://h\"\nmodel_id = \"m\"\n";
    assert!(load(&other_model).is_ok());
}

#[test]
fn names_must_not_be_empty() {
    expect_error(
        "[[models]]\nname = \"\"\n",
        2,
        "models[0].name",
        "must not be empty",
    );
    let text = "[[models]]\nname = \"a\"\n[[models.deployments]]\nname = \" \"\napi_base = \"http://h\"\nmodel_id = \"m\"\n";
    expect_error(
        text,
        4,
        "models[0].deployments[0].name",
        "must not be empty",
    );
    let text = "[[models]]\nname = \"a\"\n[[models.deployments]]\nname = \"x\"\napi_base = \"http://h\"\nmodel_id = \"\"\n";
    expect_error(
        text,
        6,
        "models[0].deployments[0].model_id",
        "must not be empty",
    );
}

#[test]
fn tpm_limit_must_be_a_positive_integer() {
    for bad in ["tpm_limit = 0", "tpm_limit = -5"] {
        let text = one_deployment(bad);
        expect_error(
            &text,
            line_with(&text, "tpm_limit", 0),
            "models[0].deployments[0].tpm_limit",
            "greater than 0",
        );
    }
    let text = one_deployment("tpm_limit = 1.5");
    expect_error(
        &text,
        line_with(&text, "tpm_limit", 0),
        "models[0].deployments[0].tpm_limit",
        "invalid type",
    );
    let text = one_deployment("tpm_limit = \"lots\"");
    expect_error(
        &text,
        line_with(&text, "tpm_limit", 0),
        "models[0].deployments[0].tpm_limit",
        "invalid type",
    );
}

#[test]
fn timeouts_and_sizes_must_be_positive_numbers() {
    for (key, value, says) in [
        ("request_timeout_s", "0", "positive"),
        ("request_timeout_s", "-1.5", "positive"),
        ("first_byte_timeout_s", "nan", "positive"),
        ("first_byte_timeout_s", "\"30\"", "invalid type"),
        ("max_body_mb", "0", "positive"),
        ("max_body_mb", "inf", "too large"),
        ("workers", "0", "from 1 to 256"),
        ("workers", "1000", "from 1 to 256"),
        ("workers", "1.5", "invalid type"),
    ] {
        let text = format!("[server]\nlisten = \"127.0.0.1:4000\"\n{key} = {value}\n");
        expect_error(&text, 3, &format!("server.{key}"), says);
    }
    expect_error(
        "[routing]\ncooldown_s = 0\n",
        2,
        "routing.cooldown_s",
        "positive",
    );
    expect_error(
        "[routing]\nfailure_threshold = 0\n",
        2,
        "routing.failure_threshold",
        "from 1 to",
    );
    expect_error(
        "[routing]\ncooldown_s = 10\nmax_cooldown_s = 5\n",
        3,
        "routing.max_cooldown_s",
        "must not be less",
    );
    // Only cooldown_s written: its default cap is the other side.
    expect_error(
        "[routing]\ncooldown_s = 400\n",
        2,
        "routing.cooldown_s",
        "must not be less",
    );
}

#[test]
fn a_lease_ttl_is_one_to_thirty_seconds() {
    let cluster =
        |extra: &str| format!("[cluster]\nredis_url = \"redis://127.0.0.1:1\"\n{extra}\n");
    let ttl = |extra: &str| load(&cluster(extra)).unwrap().cluster.unwrap().lease_ttl;
    assert_eq!(ttl(""), Duration::from_secs(30));
    assert_eq!(ttl("lease_ttl_s = 2.5"), Duration::from_millis(2_500));
    for value in ["0", "0.5", "31", "-1"] {
        expect_error(
            &cluster(&format!("lease_ttl_s = {value}")),
            3,
            "cluster.lease_ttl_s",
            "",
        );
    }
}

#[test]
fn listen_must_be_a_socket_address() {
    for bad in ["localhost", "127.0.0.1", "4000", "[::1]"] {
        let text = format!("[server]\nlisten = \"{bad}\"\n");
        expect_error(&text, 2, "server.listen", "not a socket address");
    }
}

#[test]
fn api_base_must_be_an_http_url_with_a_host() {
    for (bad, says) in [
        ("example.com/v1", "http:// or https://"),
        ("ftp://example.com", "http:// or https://"),
        ("https://", "no host"),
        ("http:///v1", "no host"),
    ] {
        let text = one_deployment("").replace("http://127.0.0.1:9001/v1", bad);
        expect_error(
            &text,
            line_with(&text, "api_base", 0),
            "models[0].deployments[0].api_base",
            says,
        );
    }
}

#[test]
fn provider_must_be_known() {
    let text = one_deployment("provider = \"gemini\"");
    let err = expect_error(
        &text,
        line_with(&text, "provider", 0),
        "models[0].deployments[0].provider",
        "openai",
    );
    assert!(err.message.contains("anthropic"), "{err}");
}

#[test]
fn provider_fields_belong_to_their_provider() {
    let text = one_deployment("provider = \"anthropic\"\napi_version = \"2024-10-21\"");
    expect_error(
        &text,
        line_with(&text, "api_version", 0),
        "models[0].deployments[0].api_version",
        "only azure deployments take an api_version (this one is anthropic)",
    );
    let text = one_deployment("provider = \"azure\"\napi_version = \"2024 10 21\"");
    expect_error(
        &text,
        line_with(&text, "api_version", 0),
        "models[0].deployments[0].api_version",
        "is not an API version",
    );
    let text = one_deployment("provider = \"azure\"\napi_version = \"2024-10-21\"");
    let config = load(&text).unwrap();
    assert_eq!(
        config.models[0].deployments[0].api_version.as_deref(),
        Some("2024-10-21")
    );
    // Anthropic's endpoint is the default: no api_base needed.
    let text = "[[models]]\nname = \"claude\"\n[[models.deployments]]\nname = \"direct\"\nprovider = \"anthropic\"\nmodel_id = \"claude-sonnet-4-5\"\n";
    assert_eq!(
        load(text).unwrap().models[0].deployments[0].api_base,
        "https://api.anthropic.com"
    );
    let text = "[[models]]\nname = \"m\"\n[[models.deployments]]\nname = \"a\"\nmodel_id = \"x\"\n";
    let (_dir, path) = config_file(text);
    let err = Config::load(&path).unwrap_err();
    assert_eq!(
        err.field.as_deref(),
        Some("models[0].deployments[0].api_base"),
        "{err}"
    );
    assert!(
        err.message.contains("is needed for provider openai"),
        "{err}"
    );
}

#[test]
fn secret_type_errors_never_quote_the_value() {
    let text = format!("[server]\napi_keys = \"{LEAKABLE}\"\n");
    expect_error(&text, 2, "server.api_keys", "array");
    let text = format!("[server]\napi_keys = [\"env:X\", [\"{LEAKABLE}\"]]\n");
    expect_error(&text, 2, "server.api_keys[1]", "must be a string");
    let text = format!("[server]\nadmin_key = [\"{LEAKABLE}\"]\n");
    expect_error(&text, 2, "server.admin_key", "must be a string");
    // A literal key with a space: reported without the key.
    let text = one_deployment("").replace(LEAKABLE, "sk-DO-NOT-LEAK with-space");
    expect_error(
        &text,
        line_with(&text, "api_key", 0),
        "models[0].deployments[0].api_key",
        "whitespace",
    );
}

// ---------------------------------------------------------------- secrets

#[test]
fn env_secrets_resolve_and_unset_ones_are_named() {
    set_env("SB_TEST_ENV_RESOLVES", "  sk-from-env-1234567890\n");
    let text = one_deployment("").replace(LEAKABLE, "env:SB_TEST_ENV_RESOLVES");
    let config = load(&text).unwrap();
    let key = config.models[0].deployments[0].api_key.as_ref().unwrap();
    assert_eq!(key.expose(), "sk-from-env-1234567890");
    assert_eq!(key.source(), &KeySource::Env("SB_TEST_ENV_RESOLVES".into()));
    assert!(!key.is_literal());
    assert_eq!(key.masked(), "sk-…7890");

    let text = one_deployment("").replace(LEAKABLE, "env:SB_TEST_ENV_NEVER_SET");
    let err = expect_error(
        &text,
        line_with(&text, "api_key", 0),
        "models[0].deployments[0].api_key",
        "environment variable SB_TEST_ENV_NEVER_SET is not set",
    );
    assert!(
        err.to_string()
            .ends_with("environment variable SB_TEST_ENV_NEVER_SET is not set"),
        "{err}"
    );

    set_env("SB_TEST_ENV_EMPTY", "  ");
    let text = "[server]\nadmin_key = \"env:SB_TEST_ENV_EMPTY\"\n";
    expect_error(
        text,
        2,
        "server.admin_key",
        "environment variable SB_TEST_ENV_EMPTY is empty",
    );
}

#[test]
fn file_secrets_resolve_relative_to_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = dir.path().join("etc");
    fs::create_dir_all(conf_dir.join("keys")).unwrap();
    fs::write(
        conf_dir.join("keys/east.key"),
        "\n  sk-from-file-abcdefgh  \n",
    )
    .unwrap();
    let absolute = dir.path().join("admin.key");
    fs::write(&absolute, "admin-from-file-key").unwrap();
    let text = one_deployment("").replace(LEAKABLE, "file:keys/east.key")
        + &format!(
            "\n[server]\nadmin_key = \"file:{}\"\napi_keys = [\"client-literal-key\"]\n",
            absolute.display()
        );
    // [server] after the models is still the server table.
    let path = conf_dir.join("switchboard.toml");
    fs::write(&path, &text).unwrap();

    let config = Config::load(&path).unwrap();
    assert_eq!(config.base_dir(), conf_dir);
    let key = config.models[0].deployments[0].api_key.as_ref().unwrap();
    assert_eq!(key.expose(), "sk-from-file-abcdefgh");
    assert_eq!(key.source(), &KeySource::File("keys/east.key".into()));
    assert_eq!(
        config.server.admin_key.as_ref().unwrap().expose(),
        "admin-from-file-key"
    );
    let client = &config.server.api_keys[0];
    assert!(client.is_literal());
    assert_eq!(client.source(), &KeySource::Literal);
    assert_eq!(client.expose(), "client-literal-key");
}

#[test]
fn unreadable_or_empty_key_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    let text = "[server]\nadmin_key = \"file:secrets/missing.key\"\n";
    fs::write(&path, text).unwrap();
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("server.admin_key"));
    assert_eq!(err.line, Some(2));
    let expected = dir.path().join("secrets/missing.key");
    assert!(
        err.message.contains(&expected.display().to_string()),
        "{err}"
    );

    fs::write(dir.path().join("empty.key"), "\n\n").unwrap();
    fs::write(&path, "[server]\napi_keys = [\"file:empty.key\"]\n").unwrap();
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("server.api_keys[0]"));
    assert!(
        err.message.contains("empty.key") && err.message.contains("is empty"),
        "{err}"
    );

    // Two lines in a key file: a mistake, reported without the contents.
    fs::write(
        dir.path().join("two.key"),
        "sk-DO-NOT-LEAK-a\nsk-DO-NOT-LEAK-b\n",
    )
    .unwrap();
    fs::write(&path, "[server]\napi_keys = [\"file:two.key\"]\n").unwrap();
    let err = Config::load(&path).unwrap_err();
    assert!(err.message.contains("whitespace"), "{err}");
    assert_no_leak(&err);
}

#[test]
fn parse_resolves_relative_to_the_given_path() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("k.key"), "sk-relative-key-xyz").unwrap();
    let path = dir.path().join("not-written.toml");
    let config = Config::parse("[server]\nadmin_key = \"file:k.key\"\n", &path).unwrap();
    assert_eq!(config.path, path);
    assert_eq!(
        config.server.admin_key.unwrap().expose(),
        "sk-relative-key-xyz"
    );
}

// ---------------------------------------------------------------- the example

#[test]
fn the_example_config_parses() {
    for var in [
        "SWITCHBOARD_API_KEY",
        "SWITCHBOARD_ADMIN_KEY",
        "AZURE_EASTUS_KEY",
        "ANTHROPIC_API_KEY",
        "EMBEDDINGS_PRIMARY_KEY",
        "EMBEDDINGS_BACKUP_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(EXAMPLE_CONFIG.contains(&format!("env:{var}")), "{var}");
        set_env(var, &format!("sk-example-{}", var.to_lowercase()));
    }
    let (dir, path) = config_file(EXAMPLE_CONFIG);
    fs::create_dir(dir.path().join("keys")).unwrap();
    fs::write(
        dir.path().join("keys/openai.key"),
        "sk-example-openai-key\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("keys/vertex-sa.json"),
        serde_json::json!({"type": "service_account", "client_email": "sb@my-project.iam.gserviceaccount.com",
            "private_key": include_str!("../assets/mock-vertex-key.pem"),
            "token_uri": "https://oauth2.googleapis.com/token"})
        .to_string(),
    )
    .unwrap();

    let config = Config::load(&path).unwrap();
    assert_eq!(config.server.api_keys.len(), 1);
    assert!(config.server.admin_key.is_some());
    let names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["gpt-4o", "claude-sonnet", "text-embedding-3-small"]);
    let providers: Vec<Provider> = config
        .models
        .iter()
        .flat_map(|m| &m.deployments)
        .map(|d| d.provider)
        .collect();
    for p in Provider::ALL {
        assert!(providers.contains(&p), "the example shows {p}");
    }
    let all: Vec<_> = config.models.iter().flat_map(|m| &m.deployments).collect();
    assert!(
        all.iter()
            .all(|d| d.api_base.starts_with("http://127.0.0.1:900"))
    );
    assert!(all.iter().any(|d| !d.enabled), "one deployment is disabled");
    assert!(all.iter().any(|d| d.tpm_limit.is_some()));
    let sources: Vec<_> = all
        .iter()
        .filter_map(|d| d.api_key.as_ref())
        .map(|k| k.source().clone())
        .collect();
    assert!(sources.iter().any(|s| matches!(s, KeySource::Env(_))));
    assert!(sources.contains(&KeySource::File("keys/openai.key".into())));
    assert!(
        config
            .models
            .iter()
            .all(|m| (1..=3).contains(&m.deployments.len()))
    );

    // Every key the example writes is explained by a comment.
    for key in [
        "listen",
        "api_keys",
        "admin_key",
        "request_timeout_s",
        "first_byte_timeout_s",
        "max_body_mb",
        "failure_threshold",
        "cooldown_s",
        "max_cooldown_s",
        "rate_limit_cooldown_s",
        "provider",
        "api_base",
        "api_version",
        "api_key",
        "region",
        "aws_access_key_id",
        "aws_secret_access_key",
        "project",
        "credentials",
        "model_id",
        "tpm_limit",
        "enabled",
    ] {
        assert!(
            EXAMPLE_CONFIG.contains(&format!("\n{key} = ")),
            "{key} is not in the example"
        );
    }
}

// ---------------------------------------------------------------- persistence

/// Two models with comments in odd places; keys by reference only.
const EDITABLE: &str = r#"# switchboard config, edited by hand
[server]
listen = "127.0.0.1:4000"   # loopback only

# The main model.
[[models]]
name = "gpt-4o"   # what clients ask for

[[models.deployments]]
name = "east"          # primary
api_base = "http://127.0.0.1:9001/v1"
model_id = "gpt-4o"
tpm_limit = 1000
enabled = true   # flip me

# West has no enabled key yet.
[[models.deployments]]
name = "west"
api_base = "http://127.0.0.1:9002/v1"
model_id = "gpt-4o"
# trailing comment of west

# Embeddings come second.
[[models]]
name = "embed"

[[models.deployments]]
name = "emb-a"
api_base = "http://127.0.0.1:9003/v1"
model_id = "text-embedding-3-small"
"#;

fn spec(name: &str) -> DeploymentSpec {
    DeploymentSpec {
        name: name.to_string(),
        provider: Provider::Azure,
        api_base: "http://127.0.0.1:9009/v1".to_string(),
        api_version: None,
        api_key: Some("env:SB_TEST_PERSIST_KEY".to_string()),
        model_id: "gpt-4o-mini".to_string(),
        tpm_limit: Some(5000),
        enabled: None,
        ..DeploymentSpec::default()
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Only the config file is left in its folder (no temporary files).
fn assert_alone(path: &Path) {
    let entries: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries, ["switchboard.toml"]);
}

fn enabled_of(path: &Path, model: &str, deployment: &str) -> bool {
    let config = Config::load(path).unwrap();
    let model = config.model(model).unwrap();
    model
        .deployments
        .iter()
        .find(|d| d.name == deployment)
        .unwrap()
        .enabled
}

#[test]
fn toggling_changes_only_the_enabled_line() {
    let (_dir, path) = config_file(EDITABLE);
    persist::set_enabled(&path, "gpt-4o", "east", false).unwrap();
    let expected = EDITABLE.replace("enabled = true   # flip me", "enabled = false   # flip me");
    assert_eq!(read(&path), expected);
    assert!(!enabled_of(&path, "gpt-4o", "east"));

    persist::set_enabled(&path, "gpt-4o", "east", true).unwrap();
    assert_eq!(
        read(&path),
        EDITABLE,
        "a round trip restores the file byte for byte"
    );
    assert_alone(&path);
}

#[test]
fn toggling_inserts_enabled_where_it_is_missing() {
    let (_dir, path) = config_file(EDITABLE);
    persist::set_enabled(&path, "gpt-4o", "west", false).unwrap();
    let after = read(&path);
    let expected = EDITABLE.replace(
        "model_id = \"gpt-4o\"\n# trailing",
        "model_id = \"gpt-4o\"\nenabled = false\n# trailing",
    );
    assert_ne!(expected, EDITABLE);
    assert_eq!(after, expected);
    assert!(!enabled_of(&path, "gpt-4o", "west"));
    assert!(enabled_of(&path, "gpt-4o", "east"));
}

#[test]
fn toggling_keeps_a_hand_edit_made_after_loading() {
    let (_dir, path) = config_file(EDITABLE);
    let loaded = Config::load(&path).unwrap();
    assert_eq!(loaded.models[0].deployments[0].tpm_limit, Some(1000));

    let hand_edited = EDITABLE.replace("tpm_limit = 1000", "tpm_limit = 2000  # raised by hand");
    fs::write(&path, &hand_edited).unwrap();
    persist::set_enabled(&path, "embed", "emb-a", false).unwrap();

    let after = read(&path);
    assert!(
        after.contains("tpm_limit = 2000  # raised by hand"),
        "{after}"
    );
    let config = Config::load(&path).unwrap();
    assert_eq!(config.models[0].deployments[0].tpm_limit, Some(2000));
    assert!(!config.models[1].deployments[0].enabled);
}

#[test]
fn toggling_unknown_names_fails_and_leaves_the_file() {
    let (_dir, path) = config_file(EDITABLE);
    let err = persist::set_enabled(&path, "gpt-5", "east", false).unwrap_err();
    assert!(matches!(err, PersistError::ModelNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("model gpt-5 not found in {}", path.display())
    );

    let err = persist::set_enabled(&path, "gpt-4o", "north", false).unwrap_err();
    assert!(
        matches!(err, PersistError::DeploymentNotFound { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("deployment north not found"),
        "{err}"
    );

    assert_eq!(read(&path), EDITABLE);
    assert_alone(&path);
}

#[test]
fn editing_a_broken_file_reports_its_line() {
    let broken = format!("[server]\nadmin_key = \"{LEAKABLE}\nlisten = 4\n");
    let (_dir, path) = config_file(&broken);
    let err = persist::set_enabled(&path, "gpt-4o", "east", false).unwrap_err();
    assert!(
        matches!(err, PersistError::Parse { line: Some(2), .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("DO-NOT-LEAK"), "{err}");
    assert_eq!(read(&path), broken);
    assert_alone(&path);
}

#[test]
fn adding_to_the_first_of_two_models_lands_in_it() {
    let (_dir, path) = config_file(EDITABLE);
    persist::add_deployment(&path, "gpt-4o", &spec("fallback")).unwrap();
    let after = read(&path);

    // A pure insertion: after west and the comment that follows it, before
    // the next model's comment; the fields in the documented order, the key
    // as its reference.
    let added = "[[models.deployments]]\nname = \"fallback\"\nprovider = \"azure\"\napi_base = \"http://127.0.0.1:9009/v1\"\napi_key = \"env:SB_TEST_PERSIST_KEY\"\nmodel_id = \"gpt-4o-mini\"\ntpm_limit = 5000\nenabled = true\n\n";
    let at = EDITABLE.find("# Embeddings come second.").unwrap();
    assert_eq!(
        after,
        format!("{}{added}{}", &EDITABLE[..at], &EDITABLE[at..])
    );

    set_env("SB_TEST_PERSIST_KEY", "sk-persisted-key-123456");
    let config = Config::load(&path).unwrap();
    let names: Vec<_> = config.models[0]
        .deployments
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["east", "west", "fallback"]);
    assert_eq!(config.models[1].deployments.len(), 1);
    let fallback = &config.models[0].deployments[2];
    assert_eq!(fallback.provider, Provider::Azure);
    assert_eq!(fallback.tpm_limit, Some(5000));
    assert_eq!(
        fallback.api_key.as_ref().unwrap().expose(),
        "sk-persisted-key-123456"
    );
    assert_alone(&path);
}

#[test]
fn adding_to_a_model_without_deployments_lands_in_it() {
    let text = "[[models]]\nname = \"empty\"\n\n# next\n[[models]]\nname = \"other\"\n\n[[models.deployments]]\nname = \"o\"\napi_base = \"http://h\"\nmodel_id = \"m\"\n";
    let (_dir, path) = config_file(text);
    let new = DeploymentSpec {
        api_key: None,
        tpm_limit: None,
        enabled: Some(false),
        ..spec("first")
    };
    persist::add_deployment(&path, "empty", &new).unwrap();
    let after = read(&path);
    assert!(
        !after.contains("tpm_limit") && !after.contains("api_key"),
        "{after}"
    );
    let config = Config::load(&path).unwrap();
    assert_eq!(config.models[0].deployments.len(), 1);
    assert!(!config.models[0].deployments[0].enabled);
    assert_eq!(config.models[1].deployments.len(), 1);
    assert!(
        after.contains("# next\n[[models]]\nname = \"other\""),
        "{after}"
    );
}

#[test]
fn adding_to_the_last_model_keeps_the_end_of_the_file() {
    // [server] after the models, a commented-out key under the last
    // deployment, a closing comment, and no final newline.
    let text = "[[models]]\nname = \"a\"\n\n[[models.deployments]]\nname = \"a1\"\napi_base = \"http://h\"\nmodel_id = \"m\"\n\n[[models]]\nname = \"b\"\n\n[[models.deployments]]\nname = \"b1\"\napi_base = \"http://h\"\nmodel_id = \"m\"\n# tpm_limit = 100\n\n# the end";
    let (_dir, path) = config_file(text);
    let new = DeploymentSpec {
        api_key: None,
        tpm_limit: None,
        ..spec("b2")
    };
    persist::add_deployment(&path, "b", &new).unwrap();
    let after = read(&path);
    let at = text.find("# the end").unwrap();
    let added = "[[models.deployments]]\nname = \"b2\"\nprovider = \"azure\"\napi_base = \"http://127.0.0.1:9009/v1\"\nmodel_id = \"gpt-4o-mini\"\nenabled = true\n\n";
    assert_eq!(after, format!("{}{added}{}", &text[..at], &text[at..]));

    // The first model, followed by the [server] table rather than a model.
    let text = "[[models]]\nname = \"a\"\n\n[[models.deployments]]\nname = \"a1\"\napi_base = \"http://h\"\nmodel_id = \"m\"\n\n[server]\nlisten = \"127.0.0.1:4000\"\n";
    let (_dir, path) = config_file(text);
    persist::add_deployment(&path, "a", &new).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.models[0].deployments.len(), 2);
    let after = read(&path);
    assert!(
        after.ends_with("enabled = true\n\n[server]\nlisten = \"127.0.0.1:4000\"\n"),
        "{after}"
    );
}

#[test]
fn adding_to_inline_arrays_appends_to_them() {
    let text = r#"[[models]]
name = "a"
deployments = [
  { name = "a1", api_base = "http://h", model_id = "m" },  # first
  { name = "a2", api_base = "http://h", model_id = "m" },
]

[[models]]
name = "b"
deployments = [{ name = "b1", api_base = "http://h", model_id = "m" }]
"#;
    let (_dir, path) = config_file(text);
    let new = DeploymentSpec {
        api_key: None,
        ..spec("a3")
    };
    persist::add_deployment(&path, "a", &new).unwrap();
    persist::add_deployment(
        &path,
        "b",
        &DeploymentSpec {
            api_key: None,
            ..spec("b2")
        },
    )
    .unwrap();
    let after = read(&path);
    assert!(after.contains("# first"), "{after}");
    let config = Config::load(&path).unwrap();
    let names = |i: usize| -> Vec<String> {
        config.models[i]
            .deployments
            .iter()
            .map(|d| d.name.clone())
            .collect()
    };
    assert_eq!(names(0), ["a1", "a2", "a3"]);
    assert_eq!(names(1), ["b1", "b2"]);
    // The vertical array stays one element per line.
    assert!(after.contains("\n  { name = \"a3\""), "{after}");

    // Toggling works in inline tables too.
    persist::set_enabled(&path, "a", "a1", false).unwrap();
    assert!(!enabled_of(&path, "a", "a1"));
}

#[test]
fn adding_a_duplicate_or_invalid_deployment_changes_nothing() {
    let (_dir, path) = config_file(EDITABLE);
    let err = persist::add_deployment(&path, "gpt-4o", &spec("west")).unwrap_err();
    assert!(
        matches!(err, PersistError::DuplicateDeployment { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("duplicate deployment"), "{err}");

    let err = persist::add_deployment(&path, "nope", &spec("x")).unwrap_err();
    assert!(matches!(err, PersistError::ModelNotFound { .. }), "{err:?}");

    let bad = DeploymentSpec {
        tpm_limit: Some(0),
        ..spec("x")
    };
    let err = persist::add_deployment(&path, "gpt-4o", &bad).unwrap_err();
    assert!(
        matches!(&err, PersistError::InvalidSpec(e) if e.field == "tpm_limit"),
        "{err:?}"
    );

    assert_eq!(read(&path), EDITABLE);
    assert_alone(&path);
}

#[test]
fn a_literal_key_makes_the_file_private() {
    let (_dir, path) = config_file(EDITABLE);
    set_mode(&path, 0o644);
    persist::add_deployment(&path, "gpt-4o", &spec("by-reference")).unwrap();
    assert_eq!(mode(&path), 0o644, "references only: permissions kept");

    let literal = DeploymentSpec {
        api_key: Some(LEAKABLE.to_string()),
        ..spec("literal")
    };
    persist::add_deployment(&path, "embed", &literal).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(read(&path).contains(&format!("api_key = \"{LEAKABLE}\"")));
    assert_alone(&path);
}

#[test]
fn toggling_keeps_permissions_or_tightens_them() {
    let (_dir, path) = config_file(EDITABLE);
    set_mode(&path, 0o640);
    persist::set_enabled(&path, "gpt-4o", "east", false).unwrap();
    assert_eq!(mode(&path), 0o640);

    // A hand-added literal key is noticed at the next write.
    let with_literal = read(&path).replace(
        "[server]\n",
        "[server]\nadmin_key = \"admin-literal-key\"\n",
    );
    fs::write(&path, with_literal).unwrap();
    set_mode(&path, 0o644);
    persist::set_enabled(&path, "gpt-4o", "east", true).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn edits_go_through_a_symlink_to_the_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.toml");
    fs::write(&real, EDITABLE).unwrap();
    let link = dir.path().join("switchboard.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();

    persist::set_enabled(&link, "gpt-4o", "east", false).unwrap();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(read(&real).contains("enabled = false   # flip me"));
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temporary file left"
    );
}

#[test]
fn tiers_fallbacks_sessions_and_timeouts_are_checked_with_file_line_and_field() {
    let deployment = |extra: &str| {
        format!(
            "[[models]]\nname = \"a\"\n[[models.deployments]]\nname = \"x\"\napi_base = \"http://h\"\nmodel_id = \"m\"\n{extra}\n"
        )
    };
    expect_error(
        "[[models]]\nname = \"a\"\nfallbacks = [\"b\"]\n",
        3,
        "models[0].fallbacks[0]",
        "no model is named \"b\"",
    );
    expect_error(
        "[[models]]\nname = \"a\"\ncontext_window_fallbacks = [\"a\"]\n",
        3,
        "models[0].context_window_fallbacks[0]",
        "is this model itself",
    );
    expect_error(
        "[[models]]\nname = \"a\"\nfallbacks = [\"b\", \"b\"]\n[[models]]\nname = \"b\"\n",
        3,
        "models[0].fallbacks[1]",
        "listed twice",
    );
    expect_error(
        "[[models]]\nname = \"a\"\naffinity = \"sticky\"\n",
        3,
        "models[0].affinity",
        "not one of \"session\", \"off\"",
    );
    expect_error(
        "[[models]]\nname = \"a\"\naffinity_ttl_s = -5\n",
        3,
        "models[0].affinity_ttl_s",
        "positive number of seconds",
    );
    expect_error(
        &deployment("priority = 1001"),
        7,
        "models[0].deployments[0].priority",
        "from 0 to 1000",
    );
    expect_error(
        &deployment("stream_idle_timeout_s = 0"),
        7,
        "models[0].deployments[0].stream_idle_timeout_s",
        "positive number of seconds",
    );
    expect_error(
        "[server]\nstream_idle_timeout_s = -1\n",
        2,
        "server.stream_idle_timeout_s",
        "positive number of seconds",
    );
    expect_error(
        "[server]\nstream_idle_timeout_s = 1e19\n",
        2,
        "server.stream_idle_timeout_s",
        "more than a year",
    );
    expect_error(
        "[routing]\nprobe_interval_s = 0\n",
        2,
        "routing.probe_interval_s",
        "positive number of seconds",
    );
    // And a valid one reads as written.
    let (_dir, path) = config_file(
        "[[models]]\nname = \"a\"\nfallbacks = [\"b\"]\naffinity = \"off\"\naffinity_ttl_s = 60\nreport_served_model = true\n[[models.deployments]]\nname = \"x\"\napi_base = \"http://h\"\nmodel_id = \"m\"\npriority = 2\nfirst_byte_timeout_s = 1.5\n[[models]]\nname = \"b\"\n",
    );
    let config = Config::load(&path).unwrap();
    let a = &config.models[0];
    assert_eq!(a.fallbacks, vec!["b".to_string()]);
    assert_eq!(a.affinity, switchboard::config::Affinity::Off);
    assert_eq!(a.affinity_ttl, std::time::Duration::from_secs(60));
    assert!(a.report_served_model);
    assert_eq!(a.deployments[0].priority, 2);
    assert_eq!(
        a.deployments[0].timeouts.first_byte,
        Some(std::time::Duration::from_millis(1500))
    );
}
