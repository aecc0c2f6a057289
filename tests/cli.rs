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
