//! The providers' official Python SDKs, driven by the scripts in tests/sdk/.

use serde_json::Value;

/// Whether `module` imports. Outside CI a test says so and passes when it
/// is missing; in CI (CI=true) that is a failure.
pub fn sdk_available(module: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the {module} Python package installed"
        );
        eprintln!(
            "SKIPPED: the {module} Python package is not installed (python3 -m pip install {module})"
        );
    }
    found
}

/// Runs a script of tests/sdk/ and reads the JSON it prints.
pub async fn python(script: &str, args: Vec<String>) -> Value {
    let script = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .args(args)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
