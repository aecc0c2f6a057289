//! The fields only the cloud providers take: Bedrock's region and AWS keys,
//! Vertex's project, region and service-account file. Each belongs to its
//! providers; on another one it is a mistake, named as such.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::deployment::{DeploymentSpec, FieldError, Provider};

/// Checks the provider-specific fields of `spec` (no I/O).
pub(super) fn check(spec: &DeploymentSpec) -> Result<(), FieldError> {
    let p = spec.provider;
    let only = |field: &str, given: bool, allowed: &[Provider]| {
        if given && !allowed.contains(&p) {
            let names: Vec<&str> = allowed.iter().map(Provider::as_str).collect();
            return Err(FieldError::new(
                field,
                format!(
                    "only {} deployments take {field} (this one is {p})",
                    names.join(" and ")
                ),
            ));
        }
        Ok(())
    };
    use Provider::{Azure, Bedrock, OpenAi, Vertex};
    only("region", spec.region.is_some(), &[Bedrock, Vertex])?;
    // The others have no Responses API: the door always bridges to them.
    only("responses", spec.responses.is_some(), &[OpenAi, Azure])?;
    only(
        "aws_access_key_id",
        spec.aws_access_key_id.is_some(),
        &[Bedrock],
    )?;
    only(
        "aws_secret_access_key",
        spec.aws_secret_access_key.is_some(),
        &[Bedrock],
    )?;
    only(
        "aws_session_token",
        spec.aws_session_token.is_some(),
        &[Bedrock],
    )?;
    only("project", spec.project.is_some(), &[Vertex])?;
    only("credentials", spec.credentials.is_some(), &[Vertex])?;
    match p {
        Bedrock => {
            let region = required(spec.region.as_deref(), "region", "us-east-1", p)?;
            check_token(region, "region")?;
            match (
                spec.aws_access_key_id.is_some(),
                spec.aws_secret_access_key.is_some(),
            ) {
                (true, true) | (false, false) => {}
                (true, false) => {
                    return Err(FieldError::new(
                        "aws_secret_access_key",
                        "is needed with aws_access_key_id",
                    ));
                }
                (false, true) => {
                    return Err(FieldError::new(
                        "aws_access_key_id",
                        "is needed with aws_secret_access_key",
                    ));
                }
            }
            if spec.aws_session_token.is_some() && spec.aws_access_key_id.is_none() {
                return Err(FieldError::new(
                    "aws_session_token",
                    "goes with aws_access_key_id and aws_secret_access_key",
                ));
            }
            if spec.aws_access_key_id.is_none() && spec.api_key.is_none() {
                return Err(FieldError::new(
                    "aws_access_key_id",
                    "is needed, with aws_secret_access_key, for SigV4; or give a Bedrock API key as api_key (Bedrock answers every unauthenticated request 403)",
                ));
            }
            if spec.aws_access_key_id.is_some() && spec.api_key.is_some() {
                return Err(FieldError::new(
                    "api_key",
                    "a Bedrock deployment signs with its AWS keys or sends a Bedrock API key, not both",
                ));
            }
            for (field, value) in [
                ("aws_access_key_id", &spec.aws_access_key_id),
                ("aws_secret_access_key", &spec.aws_secret_access_key),
                ("aws_session_token", &spec.aws_session_token),
            ] {
                if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    return Err(FieldError::new(field, "is empty"));
                }
            }
        }
        Vertex => {
            let region = required(spec.region.as_deref(), "region", "us-east5", p)?;
            check_token(region, "region")?;
            let project = required(spec.project.as_deref(), "project", "my-project", p)?;
            check_token(project, "project")?;
            required(
                spec.credentials.as_deref(),
                "credentials",
                "file:/path/to/service-account.json",
                p,
            )?;
            if spec.api_key.is_some() {
                return Err(FieldError::new(
                    "api_key",
                    "Vertex deployments authenticate with their credentials file, not an api_key",
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

fn required<'a>(
    value: Option<&'a str>,
    field: &str,
    example: &str,
    p: Provider,
) -> Result<&'a str, FieldError> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(FieldError::new(
            field,
            format!("is needed for provider {p}, e.g. \"{example}\""),
        )),
    }
}

/// Regions and projects go into host names and paths: letters, digits and `-`.
fn check_token(value: &str, field: &str) -> Result<(), FieldError> {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("\"{value}\" is not a {field} name (letters, digits and -)"),
        ))
    }
}

/// `credentials = "file:PATH"`, relative to the config's folder. Only a
/// file: the key inside must never be written into the config itself.
pub(super) fn credentials_path(reference: &str, base_dir: &Path) -> Result<PathBuf, String> {
    let Some(path) = reference.trim().strip_prefix("file:") else {
        return Err(
            "must be a file: reference to a service-account key file, e.g. \"file:/etc/switchboard/vertex.json\""
                .into(),
        );
    };
    if path.trim().is_empty() {
        return Err("\"file:\" needs a path, e.g. \"file:/etc/switchboard/vertex.json\"".into());
    }
    let path = Path::new(path.trim());
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    };
    if let Err(e) = std::fs::metadata(&path) {
        return Err(format!("cannot read {}: {e}", path.display()));
    }
    Ok(path)
}

/// `credentials` resolved: the reference checked, the file read.
pub(super) fn credentials(
    reference: &str,
    base_dir: &Path,
) -> Result<std::sync::Arc<ServiceAccount>, String> {
    let path = credentials_path(reference, base_dir)?;
    service_account(&path).map(std::sync::Arc::new)
}

/// A Google service-account key file, read when the config is loaded.
/// `Debug` shows the file and the account, never the key.
pub struct ServiceAccount {
    pub path: PathBuf,
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub private_key: SecretString,
    /// Where access tokens are fetched (the file's own, honoured).
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("path", &self.path)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    client_email: Option<String>,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    private_key: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

/// Reads and checks a service-account key file. Messages name the file
/// and the field, and quote nothing of its content (serde's own messages
/// can quote a value, so only their line and column are kept).
pub(super) fn service_account(path: &Path) -> Result<ServiceAccount, String> {
    let shown = path.display();
    let text = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let file: KeyFile = serde_json::from_slice(&text).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "a field of the wrong type",
            _ => "not JSON",
        };
        format!(
            "{shown} is not a service-account key file ({what} at line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if file.kind.as_deref() != Some("service_account") {
        return Err(format!(
            "{shown} is not a service-account key file (its \"type\" is not \"service_account\"); create a key for a service account in the Google Cloud console"
        ));
    }
    let need = |v: Option<String>, field: &str| {
        v.filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("{shown} has no {field}"))
    };
    let client_email = need(file.client_email, "client_email")?;
    let private_key = need(file.private_key, "private_key")?;
    if jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes()).is_err() {
        return Err(format!(
            "{shown}: private_key is not an RSA private key in PEM form; download a new JSON key for the service account"
        ));
    }
    let token_uri = file
        .token_uri
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
    if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
        return Err(format!("{shown}: token_uri is not an http(s) URL"));
    }
    Ok(ServiceAccount {
        path: path.to_path_buf(),
        client_email,
        private_key_id: file.private_key_id,
        private_key: private_key.into(),
        token_uri,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(provider: Provider) -> DeploymentSpec {
        DeploymentSpec {
            name: "d".into(),
            provider,
            model_id: "m".into(),
            ..DeploymentSpec::default()
        }
    }

    #[test]
    fn bedrock_needs_a_region_and_keys_in_pairs() {
        let mut s = spec(Provider::Bedrock);
        assert_eq!(check(&s).unwrap_err().field, "region");
        s.region = Some("us-east-1".into());
        assert_eq!(
            check(&s).unwrap_err().field,
            "aws_access_key_id",
            "no auth at all"
        );
        s.api_key = Some("bedrock-key".into());
        assert!(check(&s).is_ok(), "a Bedrock API key");
        s.api_key = None;
        s.aws_access_key_id = Some("env:AWS_ACCESS_KEY_ID".into());
        assert_eq!(check(&s).unwrap_err().field, "aws_secret_access_key");
        s.aws_secret_access_key = Some("env:AWS_SECRET_ACCESS_KEY".into());
        assert!(check(&s).is_ok());
        s.api_key = Some("k".into());
        assert_eq!(check(&s).unwrap_err().field, "api_key");
        s.api_key = None;
        s.region = Some("us east".into());
        assert_eq!(check(&s).unwrap_err().field, "region");
    }

    #[test]
    fn vertex_needs_project_region_and_a_credentials_file() {
        let mut s = spec(Provider::Vertex);
        s.region = Some("us-east5".into());
        assert_eq!(check(&s).unwrap_err().field, "project");
        s.project = Some("p".into());
        assert_eq!(check(&s).unwrap_err().field, "credentials");
        s.credentials = Some("file:sa.json".into());
        assert!(check(&s).is_ok());
        let e = credentials_path("{\"private_key\": \"x\"}", Path::new(".")).unwrap_err();
        assert!(!e.contains("private_key"), "{e}");
    }

    #[test]
    fn cloud_fields_on_other_providers_are_named_mistakes() {
        let mut s = spec(Provider::OpenAi);
        s.region = Some("us-east-1".into());
        let e = check(&s).unwrap_err();
        assert_eq!(e.field, "region");
        assert!(e.message.contains("bedrock and vertex"), "{e}");
        let mut s = spec(Provider::Anthropic);
        s.aws_secret_access_key = Some("x".into());
        assert_eq!(check(&s).unwrap_err().field, "aws_secret_access_key");
    }
}

#[cfg(test)]
mod key_file_tests {
    use super::*;

    #[test]
    fn a_key_file_is_read_and_its_faults_named_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.json");
        let write = |v: serde_json::Value| std::fs::write(&path, v.to_string()).unwrap();
        let key = include_str!("../../assets/mock-vertex-key.pem");
        write(
            serde_json::json!({"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com",
            "private_key": key, "token_uri": "http://127.0.0.1:1/token"}),
        );
        let sa = service_account(&path).unwrap();
        assert_eq!(sa.token_uri, "http://127.0.0.1:1/token");
        assert!(!format!("{sa:?}").contains(&key[40..80]));
        write(serde_json::json!({"type": "authorized_user", "private_key": "SECRETSTUFF"}));
        let e = service_account(&path).unwrap_err();
        assert!(e.contains("sa.json") && !e.contains("SECRETSTUFF"), "{e}");
        std::fs::write(
            &path,
            "{\"type\": \"service_account\", \"private_key\": 12, \"x\": \"SECRETSTUFF\"}",
        )
        .unwrap();
        let e = service_account(&path).unwrap_err();
        assert!(!e.contains("SECRETSTUFF") && e.contains("line 1"), "{e}");
        write(
            serde_json::json!({"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com",
            "private_key": "-----BEGIN PRIVATE KEY-----\nGARBAGE\n-----END PRIVATE KEY-----\n"}),
        );
        let e = service_account(&path).unwrap_err();
        assert!(
            e.contains("not an RSA private key") && !e.contains("GARBAGE"),
            "{e}"
        );
        let e = service_account(&dir.path().join("missing.json")).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}
