//! `Config::parse` on arbitrary text.
//!
//! Checks: no panic; an error renders (`Display`) as one line without control
//! characters (a quoted key or value may hold any); an error never
//! quotes a literal key written in a secret field (`api_key`, `api_keys`,
//! `admin_key`).
//!
//! `file:` references are resolved against a folder that does not exist, so
//! a relative one can never be read; inputs with an absolute `file:` path are
//! skipped (the fuzzer could otherwise ask for `/dev/zero` or `/dev/stdin`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use switchboard::config::Config;

const CONFIG_PATH: &str = "/nonexistent-switchboard-fuzz/switchboard.toml";
const SECRET_FIELDS: [&str; 3] = ["api_key", "api_keys", "admin_key"];

#[derive(Default)]
struct Strings {
    /// Every key and string value in the document.
    all: Vec<String>,
    /// String values at or below a secret field.
    secrets: Vec<String>,
    absolute_file_ref: bool,
}

fn walk(value: &toml::Value, in_secret: bool, out: &mut Strings) {
    match value {
        toml::Value::String(s) => {
            if let Some(p) = s.strip_prefix("file:")
                && Path::new(p.trim()).is_absolute()
            {
                out.absolute_file_ref = true;
            }
            if in_secret {
                out.secrets.push(s.clone());
            }
            out.all.push(s.clone());
        }
        toml::Value::Array(a) => a.iter().for_each(|v| walk(v, in_secret, out)),
        toml::Value::Table(t) => walk_table(t, in_secret, out),
        _ => {}
    }
}

fn walk_table(table: &toml::Table, in_secret: bool, out: &mut Strings) {
    for (k, v) in table {
        out.all.push(k.clone());
        walk(v, in_secret || SECRET_FIELDS.contains(&k.as_str()), out);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The same parser `Config::parse` uses: if this fails, so does the
    // config (before any secret is resolved).
    let strings = match toml::from_str::<toml::Table>(text) {
        Ok(table) => {
            let mut s = Strings::default();
            walk_table(&table, false, &mut s);
            Some(s)
        }
        Err(_) => None,
    };
    if strings.as_ref().is_some_and(|s| s.absolute_file_ref) {
        return;
    }
    let path = Path::new(CONFIG_PATH);
    let Err(err) = Config::parse(text, path) else {
        return;
    };
    let shown = err.to_string();
    assert!(
        !shown.chars().any(char::is_control),
        "error holds a control character: {shown:?}"
    );
    let Some(strings) = strings else { return };
    for secret in &strings.secrets {
        if secret.len() < 12 || secret.starts_with("file:") {
            continue;
        }
        // Only a secret that no other key or value contains can be told apart.
        let holders = strings.all.iter().filter(|s| s.contains(secret.as_str())).count();
        if holders != 1 || CONFIG_PATH.contains(secret.as_str()) {
            continue;
        }
        assert!(
            !shown.contains(secret.as_str()),
            "error quotes a secret {secret:?}: {shown:?}"
        );
    }
});
