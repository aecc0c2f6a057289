//! The real binary: `check`, `init`, and startup errors that name file, line and field.

use std::process::Command;

fn switchboard(args: &[&str], dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn init_writes_a_starter_that_check_accepts_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, _) = switchboard(&["init", "sb.toml"], dir.path());
    assert!(ok);
    let (ok, _, err) = switchboard(&["init", "sb.toml"], dir.path());
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    // The starter names env vars and a key file; without them check says which.
    let (ok, _, err) = switchboard(&["check", "--config", "sb.toml"], dir.path());
    assert!(!ok);
    assert!(
        err.contains("sb.toml:") && err.contains("SWITCHBOARD_API_KEY"),
        "{err}"
    );
}

#[test]
fn check_summarises_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ok.toml"),
        "[[models]]\nname = \"gpt-4o\"\n[[models.deployments]]\nname = \"a\"\napi_base = \"http://127.0.0.1:1/v1\"\nmodel_id = \"x\"\ntpm_limit = 1000\n",
    )
    .unwrap();
    let (ok, out, _) = switchboard(&["check", "--config", "ok.toml"], dir.path());
    assert!(ok);
    assert!(out.contains("gpt-4o: 1 deployment(s), 1 enabled"), "{out}");
}

#[test]
fn bad_configs_fail_with_file_line_and_field_and_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[models]]\nname = \"m\"\n[[models.deployments]]\nname = \"a\"\napi_base = \"http://x/v1\"\nmodel_id = \"x\"\ntpm_limit = 0\n",
            "bad.toml:7",
            "tpm_limit",
        ),
        ("[server]\nlisten = \"nowhere\"\n", "bad.toml:2", "listen"),
        (
            "[[models]]\nname = \"m\"\n[[models.deployments]]\nname = \"a\"\napi_base = \"http://x/v1\"\nmodel_id = \"x\"\napi_key = \"sk-very-secret-1234\"\ncolour = \"red\"\n",
            "bad.toml:8",
            "colour",
        ),
        (
            "[[models]]\nname = \"m\"\n[[models]]\nname = \"m\"\n",
            "bad.toml:4",
            "name",
        ),
    ];
    for (text, location, field) in cases {
        std::fs::write(dir.path().join("bad.toml"), text).unwrap();
        let (ok, _, err) = switchboard(&["check", "--config", "bad.toml"], dir.path());
        assert!(!ok, "{text}");
        assert!(err.contains(location), "{location} in {err}");
        assert!(err.contains(field), "{field} in {err}");
        assert!(!err.contains("sk-very-secret"), "{err}");
    }
    let (ok, _, err) = switchboard(&["serve", "--config", "missing.toml"], dir.path());
    assert!(!ok);
    assert!(
        err.contains("switchboard demo") && err.contains("switchboard init"),
        "{err}"
    );
}

/// SIGTERM drains in-flight streams, and a second signal stops at once.
/// A `mock-upstream` process with `args`; returns it and its api_base.
fn mock_process(args: &[&str]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut mock = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["mock-upstream", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(mock.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let upstream = line.trim().rsplit(' ').next().unwrap().to_string();
    (mock, upstream)
}

/// `switchboard serve` on a free port with one deployment `a` at `upstream`
/// and `server` lines; returns the process (stderr piped) and a connection
/// on which a stream has started.
fn serve_with_a_stream(
    dir: &std::path::Path,
    upstream: &str,
    server: &str,
) -> (std::process::Child, u16, std::net::TcpStream) {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("sb.toml"),
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{server}\n[[models]]\nname = \"m\"\n[[models.deployments]]\nname = \"a\"\napi_base = \"{upstream}\"\nmodel_id = \"x\"\n"),
    )
    .unwrap();
    let server = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config", "sb.toml"])
        .current_dir(dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("gateway did not start: {e}"),
        }
    };
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    write!(conn, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).unwrap();
    // Wait until the stream has started (headers and the first event are in).
    let mut buf = [0u8; 512];
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = conn.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    (server, port, conn)
}

fn signal(pid: u32) {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
}

/// Reads stderr until a line contains `what`; returns what was read.
fn wait_for_log(stderr: &mut impl std::io::BufRead, what: &str) -> String {
    let mut log = String::new();
    while !log.contains(what) {
        let mut l = String::new();
        assert!(
            stderr.read_line(&mut l).unwrap() > 0,
            "no `{what}` in: {log}"
        );
        log.push_str(&l);
    }
    log
}

#[test]
fn a_stop_signal_lets_a_stream_in_flight_finish_and_refuses_new_connections() {
    use std::io::{BufReader, Read};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    // Five chunks 300 ms apart: the stream is still running when the signal comes.
    let (mut mock, upstream) = mock_process(&["--tokens", "5", "--chunk-delay-ms", "300"]);
    let (mut server, port, mut conn) = serve_with_a_stream(dir.path(), &upstream, "");
    signal(server.id());
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    wait_for_log(&mut stderr, "stopping");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no new connections once stopping"
    );
    let mut rest = String::new();
    conn.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains("data: [DONE]"),
        "the stream ran to its end: {rest}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "exits once the stream is done");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    mock.kill().unwrap();
    mock.wait().unwrap();
}

#[test]
fn the_drain_ends_at_shutdown_timeout_and_a_second_signal_ends_it_at_once() {
    use std::io::BufReader;
    use std::time::{Duration, Instant};
    // An upstream that streams one chunk a minute keeps a request in flight.
    let (mut mock, upstream) = mock_process(&["--chunk-delay-ms", "60000"]);
    for second_signal in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let timeout = if second_signal { 60 } else { 1 };
        let (mut server, _, _conn) = serve_with_a_stream(
            dir.path(),
            &upstream,
            &format!("shutdown_timeout_s = {timeout}"),
        );
        signal(server.id());
        let mut stderr = BufReader::new(server.stderr.take().unwrap());
        wait_for_log(&mut stderr, "stopping");
        assert!(
            server.try_wait().unwrap().is_none(),
            "still draining the open stream"
        );
        if second_signal {
            signal(server.id());
        }
        let stopped = Instant::now() + Duration::from_secs(5);
        while server.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < stopped,
                "stops at the drain deadline, or at once on a second signal"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    mock.kill().unwrap();
    mock.wait().unwrap();
}

#[test]
fn a_reachable_address_without_client_keys_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("open.toml"),
        "[server]\nlisten = \"0.0.0.0:4000\"\n[[models]]\nname = \"m\"\n",
    )
    .unwrap();
    // From the config, for serve and for the dashboard, before binding anything.
    for args in [
        &["serve", "--config", "open.toml"][..],
        &["--config", "open.toml"][..],
    ] {
        let (ok, _, err) = switchboard(args, dir.path());
        assert!(!ok, "{args:?}");
        assert!(err.contains("open.toml: server.listen"), "{err}");
        assert!(err.contains("refusing to listen on 0.0.0.0:4000"), "{err}");
        assert!(err.contains("--allow-unauthenticated"), "{err}");
    }
    // And from --listen.
    std::fs::write(dir.path().join("local.toml"), "[[models]]\nname = \"m\"\n").unwrap();
    let (ok, _, err) = switchboard(
        &["serve", "--config", "local.toml", "--listen", "[::]:4000"],
        dir.path(),
    );
    assert!(!ok);
    assert!(err.contains("refusing to listen on [::]:4000"), "{err}");
}

/// Runs the binary with its stdout on a pipe whose reader has already
/// gone, as `switchboard check | head -0` would (deterministic: the read end
/// is closed before the process starts, so its first write fails).
fn into_a_closed_pipe(args: &[&str], dir: &std::path::Path) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(dir)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn commands_that_print_exit_quietly_when_their_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ok.toml"),
        "[[models]]\nname = \"gpt-4o\"\n[[models.deployments]]\nname = \"a\"\napi_base = \"http://127.0.0.1:1/v1\"\nmodel_id = \"x\"\n",
    )
    .unwrap();
    for args in [
        &["check", "--config", "ok.toml"][..],
        &["init", "new.toml"],
        &["--help"],
        &["--version"],
        &["check", "--help"],
    ] {
        let (status, stderr) = into_a_closed_pipe(args, dir.path());
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        // The command's own outcome stands: the config is good, the file was written.
        assert!(status.success(), "{args:?}: {status:?} {stderr}");
    }
    assert!(dir.path().join("new.toml").exists());
}
