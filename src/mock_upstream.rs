//! `switchboard mock-upstream`: a simulated OpenAI-compatible provider.
//!
//! Tests, the demo and the benchmarks point deployments at it to stand in for
//! OpenAI or Azure OpenAI. It answers like they do (shapes, usage, SSE
//! frames, error bodies, rate-limit headers) and can misbehave on demand
//! through a [`Mode`]: fail with any status, hang, send garbage, reset the
//! connection, cut a stream. It enforces the capacity limits providers do
//! (tokens, requests per minute and per slice, input and output tokens,
//! requests in flight; see `limits`), each with its provider's 429.
//!
//! It sits in load benchmarks, so the hot path takes no lock across an
//! await, logs nothing per request and builds its JSON without a DOM.
//!
//! Besides the OpenAI routes, the same server answers a small control API:
//! `PUT /mock/mode` (a [`Mode`] as JSON, 204), `GET /mock/mode` and
//! `GET /mock/stats` (a [`MockStats`] as JSON). It needs no key, so that a
//! test of the real binary can steer it.

mod anthropic;
mod bedrock;
mod body;
mod dates;
mod handler;
mod limits;
mod openai;
mod refusal;
mod server;
mod state;
mod vertex;
mod window;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};

use state::Shared;

/// The command line of `switchboard mock-upstream`.
#[derive(clap::Args, Debug, Clone)]
pub struct MockOptions {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Delay before the response headers of every API request, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,
    /// Completion tokens per reply (capped by the request's max_tokens).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub tokens: u32,
    /// Delay between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub chunk_delay_ms: u64,
    /// Fraction of requests answered 500, from 0 to 1.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION", value_parser = parse_fraction)]
    pub fail_rate: f64,
    /// Tokens per minute this upstream serves before it answers 429.
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u64).range(1..))]
    pub tpm_limit: Option<u64>,
    /// Requests per minute (a sliding 60 s window) before it answers 429.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub rpm_limit: Option<u64>,
    /// Also enforce --rpm-limit in slices of 1 or 10 s, as Azure does: at
    /// most N x SECONDS / 60 requests (rounded down, at least 1) in any
    /// span of SECONDS.
    #[arg(long, value_name = "SECONDS", requires = "rpm_limit", value_parser = parse_slice)]
    pub rpm_slice_s: Option<u64>,
    /// Input (prompt) tokens per minute before it answers 429.
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u64).range(1..))]
    pub input_tpm_limit: Option<u64>,
    /// Output tokens per minute before it answers 429: max_tokens reserved
    /// at admission, corrected to what was written when the answer ends.
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u64).range(1..))]
    pub output_tpm_limit: Option<u64>,
    /// Requests served at once (a stream until its last byte or until its
    /// client leaves); the next one is answered 429 at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight: Option<u64>,
    /// Every window (tokens, requests, slice, input, output) forgets what
    /// it counted this much before its span is up: room for a gateway whose
    /// clock and counting granularity differ from the mock's (0: exact).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub limit_grace_ms: u64,
    /// Require "Authorization: Bearer KEY" or "api-key: KEY" (else 401).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Model name reported in answers (default: the request's model).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Seed for the fail-rate draws, for reproducible runs.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Streams that ask for usage get it in their finish chunk, as some
    /// OpenAI-compatible servers send it, not in a chunk of its own.
    #[arg(long)]
    pub usage_in_finish_chunk: bool,
    /// Endpoints this upstream does not serve, comma-separated: they are
    /// answered 404 like an unknown URL (a chat-only server's embeddings).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "ENDPOINTS")]
    pub without: Vec<MockEndpoint>,
    /// Which provider's API to speak.
    #[arg(long, value_enum, default_value_t = MockProvider::Openai, value_name = "PROVIDER")]
    pub provider: MockProvider,
    /// Anthropic (and OpenAI Responses): input tokens each answer reports
    /// as read from the prompt cache (`cache_read_input_tokens`; for the
    /// Responses API `input_tokens_details.cached_tokens`, at most the
    /// input).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub cache_read_tokens: u64,
    /// Bedrock: the AWS access key ID whose SigV4 signatures are accepted.
    #[arg(long, value_name = "ID", requires = "aws_secret_access_key")]
    pub aws_access_key_id: Option<String>,
    /// Bedrock: the secret access key that signatures are checked with.
    #[arg(long, value_name = "SECRET", requires = "aws_access_key_id")]
    pub aws_secret_access_key: Option<String>,
    /// Vertex: how long the access tokens it issues last, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub token_ttl_s: u64,
    /// Vertex: write a service-account key file for this mock (its
    /// token_uri pointing here) to PATH, mode 0600.
    #[arg(long, value_name = "PATH")]
    pub write_credentials: Option<std::path::PathBuf>,
}

/// The API `mock-upstream` speaks (`--provider`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MockProvider {
    /// OpenAI's API (any base URL path ending in /chat/completions etc.).
    #[default]
    Openai,
    /// Azure OpenAI: the classic `deployments/NAME/...?api-version=` API
    /// (the version required) and `/openai/v1`, with Azure's content-filter
    /// annotations and stream chunks.
    Azure,
    /// Anthropic's Messages API (`/v1/messages`).
    Anthropic,
    /// Amazon Bedrock's Converse API (`/model/ID/converse`, `/converse-stream`),
    /// SigV4 checked against --aws-access-key-id / --aws-secret-access-key.
    Bedrock,
    /// Google Vertex AI: its own OAuth token endpoint (`/token`), Claude's
    /// rawPredict / streamRawPredict and the OpenAI-compatible endpoint.
    Vertex,
}

/// An API endpoint the mock may be told not to serve (`--without`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockEndpoint {
    Chat,
    Completions,
    Embeddings,
    /// OpenAI's Responses API (`/responses` and `/responses/{id}`).
    Responses,
}

impl MockOptions {
    /// The command line's defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        MockOptions {
            listen,
            latency_ms: 0,
            tokens: 16,
            chunk_delay_ms: 0,
            fail_rate: 0.0,
            tpm_limit: None,
            rpm_limit: None,
            rpm_slice_s: None,
            input_tpm_limit: None,
            output_tpm_limit: None,
            max_in_flight: None,
            limit_grace_ms: 0,
            api_key: None,
            model: None,
            seed: None,
            usage_in_finish_chunk: false,
            without: Vec::new(),
            provider: MockProvider::Openai,
            cache_read_tokens: 0,
            aws_access_key_id: None,
            aws_secret_access_key: None,
            token_ttl_s: 3600,
            write_credentials: None,
        }
    }

    /// Rejects what clap would have rejected, for options built in code.
    fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.fail_rate) {
            return Err(format!(
                "fail_rate must be between 0 and 1, not {}",
                self.fail_rate
            ));
        }
        for (name, limit) in [
            ("tpm_limit", self.tpm_limit),
            ("rpm_limit", self.rpm_limit),
            ("input_tpm_limit", self.input_tpm_limit),
            ("output_tpm_limit", self.output_tpm_limit),
            ("max_in_flight", self.max_in_flight),
        ] {
            if limit == Some(0) {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        match (self.rpm_slice_s, self.rpm_limit) {
            (Some(s), _) if s != 1 && s != 10 => {
                Err(format!("rpm_slice_s must be 1 or 10, not {s}"))
            }
            (Some(_), None) => Err("rpm_slice_s needs rpm_limit".to_string()),
            _ => Ok(()),
        }
    }
}

fn parse_slice(s: &str) -> Result<u64, String> {
    match s {
        "1" => Ok(1),
        "10" => Ok(10),
        _ => Err(format!("`{s}` is not 1 or 10")),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let value: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("`{s}` is not between 0 and 1"))
    }
}

/// How the mock answers; switch it at run time with [`MockHandle::set_mode`]
/// or `PUT /mock/mode`. JSON form: `{"mode":"fail","status":503}`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// Answer like the provider does.
    #[default]
    Normal,
    /// Every API request gets `status` with an OpenAI error body, and
    /// `Retry-After` / `retry-after-ms` when `retry_after_s` is given (for a
    /// 429 also `x-ratelimit-reset-tokens`). Statuses outside 400..=599 are
    /// answered as 500.
    Fail {
        status: u16,
        #[serde(default)]
        retry_after_s: Option<f64>,
        #[serde(default)]
        message: Option<String>,
    },
    /// Read the request and never answer.
    Hang,
    /// Send a 200 and its headers, then no body bytes ever.
    HangAfterHeaders,
    /// A 200 whose body is not JSON (streams: SSE frames whose data is not
    /// JSON, and no `[DONE]`).
    Garbage,
    /// Read the request, then close the connection without a response
    /// (with an RST: SO_LINGER 0).
    ResetBeforeHeaders,
    /// Streams: send `after_chunks` chunks, then abort the connection so the
    /// chunked body ends abnormally. Non-streams: half the body, then abort.
    ResetMidStream { after_chunks: u32 },
    /// Streams: send `after_chunks` chunks, then end the body cleanly without
    /// a usage chunk or `[DONE]`. Non-streams: the first half of the JSON
    /// body, framed as complete.
    TruncatedStream { after_chunks: u32 },
    /// Streams: send `after_chunks` chunks, then the provider's error event
    /// (Anthropic's `overloaded_error`, an OpenAI error frame, Bedrock's
    /// `exception`, default `modelStreamErrorException`) and end.
    /// Non-streams answer normally.
    ErrorMidStream {
        after_chunks: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exception: Option<String>,
    },
    /// Wait `delay_ms` before the response headers, then answer normally:
    /// a provider slow to its first token.
    SlowFirstByte { delay_ms: u64 },
    /// Streams: send `after_chunks` chunks, then nothing, the connection
    /// left open (0: headers and silence). Non-streams: the first half of
    /// the body, then silence.
    StallMidStream { after_chunks: u32 },
    /// Streams: the whole answer, its finish chunk and usage included, then
    /// a clean end without the provider's closing event (OpenAI's
    /// `data: [DONE]`, Anthropic's `message_stop`, Bedrock's `metadata`).
    /// Non-streams answer normally.
    NoDone,
    /// Streams: after `after_chunks` chunks, one extra frame whose data is
    /// not JSON (a copy of the next frame cut short; for Bedrock a
    /// well-framed event with such a payload), then the whole rest.
    /// Non-streams answer normally.
    MalformedChunk { after_chunks: u32 },
}

/// Counters since the mock started.
///
/// `requests` counts API requests (`/v1/...`, not `/health` or `/mock/...`).
/// Each answered one lands in exactly one of `ok` (2xx headers sent, even
/// when a mode then spoils the body), `rate_limited` (429, whatever sent
/// it: a limit or `Mode::Fail`) or `errors` (any other status, or a reset
/// before the headers); a hung request lands in none. Token counts are
/// those of admitted requests, as the TPM window counts them.
/// `rate_limited_by` says which of the mock's own limits sent its 429s.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MockStats {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub rate_limited: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The `model` of the last POST request body (None when it had none).
    pub last_model: Option<String>,
    /// The last POST request body as received, for tests of the gateway's rewrite.
    pub last_body: Option<String>,
    /// Vertex: requests to the token endpoint.
    #[serde(default)]
    pub token_requests: u64,
    /// The path and query of the last API request (`/v1/messages?beta=true`).
    #[serde(default)]
    pub last_path: Option<String>,
    /// The headers of the last API request, by lower-case name (repeated
    /// ones joined with ", "): what a gateway forwarded, `anthropic-beta`
    /// and `anthropic-version` among them.
    #[serde(default)]
    pub last_headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub rate_limited_by: RateLimitedBy,
    /// Requests being served now (streams until their last byte).
    #[serde(default)]
    pub in_flight: u64,
    /// The most requests ever served at once, counted with or without
    /// `--max-in-flight`.
    #[serde(default)]
    pub max_in_flight_seen: u64,
}

/// The 429s the mock's limits sent, by limit. A request over several
/// limits at once counts under each; `Mode::Fail` 429s count under none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RateLimitedBy {
    /// `--tpm-limit`.
    pub tokens: u64,
    /// `--rpm-limit`, its slice included.
    pub requests: u64,
    /// `--input-tpm-limit`.
    pub input: u64,
    /// `--output-tpm-limit`.
    pub output: u64,
    /// `--max-in-flight`.
    pub in_flight: u64,
}

/// A running mock; dropping it stops the server and its connections.
pub struct MockHandle {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: DropGuard,
}

impl std::fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHandle")
            .field("addr", &self.addr)
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl MockHandle {
    pub fn set_mode(&self, mode: Mode) {
        self.shared.set_mode(mode);
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    pub fn stats(&self) -> MockStats {
        self.shared.stats()
    }

    /// What a deployment's `api_base` should be: `http://ADDR/v1` for
    /// OpenAI, `http://ADDR` for the providers whose paths the gateway
    /// builds from the root (Azure classic, Anthropic).
    pub fn base_url(&self) -> String {
        match self.shared.opts.provider {
            MockProvider::Openai => format!("http://{}/v1", self.addr),
            _ => format!("http://{}", self.addr),
        }
    }

    /// Vertex: a service-account key file whose tokens this mock issues.
    pub fn credentials_json(&self) -> String {
        vertex::credentials_json(self.addr)
    }

    /// Stops accepting and closes every open connection.
    pub fn shutdown(self) {
        // Dropping the guard cancels the token every task watches.
    }
}

/// Binds `opts.listen` and serves in background tasks; returns once bound.
pub async fn spawn(opts: MockOptions) -> std::io::Result<MockHandle> {
    opts.validate()
        .map_err(|msg| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg))?;
    let listener = TcpListener::bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(opts));
    let _ = shared.addr.set(addr);
    if let Some(path) = &shared.opts.write_credentials {
        write_private(path, &vertex::credentials_json(addr))?;
    }
    let stop = CancellationToken::new();
    tokio::spawn(server::accept_loop(listener, shared.clone(), stop.clone()));
    Ok(MockHandle {
        addr,
        shared,
        _stop: stop.drop_guard(),
    })
}

/// The CLI entry point: serve until Ctrl-C or SIGTERM.
pub async fn run(opts: MockOptions) -> anyhow::Result<()> {
    let listen = opts.listen;
    let handle = spawn(opts).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => anyhow::anyhow!("mock-upstream: {e}"),
        _ => anyhow::anyhow!("mock-upstream: cannot listen on {listen}: {e}"),
    })?;
    let banner = match handle.shared.opts.provider {
        MockProvider::Openai => format!("mock-upstream listening on {}", handle.base_url()),
        other => format!(
            "mock-upstream listening on {} ({})",
            handle.base_url(),
            format!("{other:?}").to_lowercase()
        ),
    };
    // Not println!, which panics on a closed pipe: a script that reads the
    // banner and leaves (`| grep -m1 listening`) still has a server.
    let _ = writeln!(std::io::stdout(), "{banner}");
    crate::shutdown::signal().await;
    handle.shutdown();
    Ok(())
}

/// Writes a file only its owner can read (it holds a private key).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        opts: MockOptions,
    }

    fn parse(args: &[&str]) -> Result<MockOptions, clap::Error> {
        Cli::try_parse_from(std::iter::once("mock-upstream").chain(args.iter().copied()))
            .map(|c| c.opts)
    }

    #[test]
    fn the_command_line_defaults_match_new() {
        let parsed = parse(&["--listen", "127.0.0.1:0"]).unwrap();
        let new = MockOptions::new("127.0.0.1:0".parse().unwrap());
        assert_eq!(format!("{parsed:?}"), format!("{new:?}"));
    }

    #[test]
    fn the_command_line_takes_every_option() {
        let o = parse(&[
            "--listen",
            "127.0.0.1:9",
            "--latency-ms",
            "5",
            "--tokens",
            "3",
            "--chunk-delay-ms",
            "2",
            "--fail-rate",
            "0.25",
            "--tpm-limit",
            "1000",
            "--api-key",
            "k",
            "--model",
            "m",
            "--seed",
            "7",
            "--usage-in-finish-chunk",
            "--without",
            "embeddings,completions",
            "--rpm-limit",
            "600",
            "--rpm-slice-s",
            "10",
            "--input-tpm-limit",
            "4000",
            "--output-tpm-limit",
            "800",
            "--max-in-flight",
            "8",
            "--limit-grace-ms",
            "1500",
        ])
        .unwrap();
        assert_eq!(
            (
                o.rpm_limit,
                o.rpm_slice_s,
                o.input_tpm_limit,
                o.output_tpm_limit,
                o.max_in_flight,
                o.limit_grace_ms
            ),
            (Some(600), Some(10), Some(4000), Some(800), Some(8), 1500)
        );
        assert!(o.usage_in_finish_chunk);
        assert_eq!(
            o.without,
            [MockEndpoint::Embeddings, MockEndpoint::Completions]
        );
        assert_eq!(
            (o.latency_ms, o.tokens, o.chunk_delay_ms, o.fail_rate),
            (5, 3, 2, 0.25)
        );
        assert_eq!(
            (
                o.tpm_limit,
                o.api_key.as_deref(),
                o.model.as_deref(),
                o.seed
            ),
            (Some(1000), Some("k"), Some("m"), Some(7))
        );
    }

    #[test]
    fn the_command_line_rejects_bad_values() {
        assert!(parse(&[]).is_err(), "--listen is required");
        assert!(parse(&["--listen", "127.0.0.1:0", "--fail-rate", "1.5"]).is_err());
        assert!(parse(&["--listen", "127.0.0.1:0", "--fail-rate", "x"]).is_err());
        assert!(parse(&["--listen", "127.0.0.1:0", "--tpm-limit", "0"]).is_err());
        for flag in [
            "--rpm-limit",
            "--input-tpm-limit",
            "--output-tpm-limit",
            "--max-in-flight",
        ] {
            assert!(
                parse(&["--listen", "127.0.0.1:0", flag, "0"]).is_err(),
                "{flag}"
            );
        }
        let slice = |s: &str| {
            parse(&[
                "--listen",
                "127.0.0.1:0",
                "--rpm-limit",
                "60",
                "--rpm-slice-s",
                s,
            ])
        };
        assert_eq!(slice("1").unwrap().rpm_slice_s, Some(1));
        assert!(slice("5").is_err(), "slices are 1 or 10 s");
        assert!(
            parse(&["--listen", "127.0.0.1:0", "--rpm-slice-s", "10"]).is_err(),
            "a slice needs --rpm-limit"
        );
        let mut o = MockOptions::new("127.0.0.1:0".parse().unwrap());
        o.rpm_slice_s = Some(10);
        assert!(o.validate().is_err(), "in code too");
        o.rpm_limit = Some(60);
        assert!(o.validate().is_ok());
        o.rpm_slice_s = Some(3);
        assert!(o.validate().is_err());
    }

    #[test]
    fn modes_have_the_documented_json() {
        let fail: Mode = serde_json::from_str(r#"{"mode":"fail","status":503}"#).unwrap();
        assert_eq!(
            fail,
            Mode::Fail {
                status: 503,
                retry_after_s: None,
                message: None
            }
        );
        let cut: Mode =
            serde_json::from_str(r#"{"mode":"reset_mid_stream","after_chunks":2}"#).unwrap();
        assert_eq!(cut, Mode::ResetMidStream { after_chunks: 2 });
        assert_eq!(
            serde_json::to_string(&Mode::HangAfterHeaders).unwrap(),
            r#"{"mode":"hang_after_headers"}"#
        );
        for (json, mode) in [
            (
                r#"{"mode":"slow_first_byte","delay_ms":500}"#,
                Mode::SlowFirstByte { delay_ms: 500 },
            ),
            (
                r#"{"mode":"stall_mid_stream","after_chunks":3}"#,
                Mode::StallMidStream { after_chunks: 3 },
            ),
            (r#"{"mode":"no_done"}"#, Mode::NoDone),
            (
                r#"{"mode":"malformed_chunk","after_chunks":2}"#,
                Mode::MalformedChunk { after_chunks: 2 },
            ),
        ] {
            assert_eq!(serde_json::from_str::<Mode>(json).unwrap(), mode);
            assert_eq!(serde_json::to_string(&mode).unwrap(), json);
        }
    }
}
