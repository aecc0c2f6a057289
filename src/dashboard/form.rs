//! The add-fallback form: its fields, their defaults, validation, and the
//! test-then-save flow. Pure state; the run loop does the requests.

use tui_input::{Input, InputRequest};

use super::action::{FieldMessage, TestResult};
use crate::config::{DeploymentSpec, Provider};

/// The fields in the contract's order, then the button. A provider's own
/// fields (Azure's API version) come after the API base, shown only for
/// that provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Provider,
    ApiBase,
    ApiVersion,
    Region,
    Project,
    Credentials,
    ApiKey,
    AwsAccessKeyId,
    AwsSecretAccessKey,
    AwsSessionToken,
    ModelId,
    TpmLimit,
    Priority,
    Enabled,
    Button,
}

impl Field {
    pub const ALL: [Field; 16] = [
        Field::Name,
        Field::Provider,
        Field::ApiBase,
        Field::ApiVersion,
        Field::Region,
        Field::Project,
        Field::Credentials,
        Field::ApiKey,
        Field::AwsAccessKeyId,
        Field::AwsSecretAccessKey,
        Field::AwsSessionToken,
        Field::ModelId,
        Field::TpmLimit,
        Field::Priority,
        Field::Enabled,
        Field::Button,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Field::Name => "Name",
            Field::Provider => "Provider",
            Field::ApiBase => "API base",
            Field::ApiVersion => "API version",
            Field::Region => "Region",
            Field::Project => "Project",
            Field::Credentials => "Key file",
            Field::ApiKey => "API key",
            Field::AwsAccessKeyId => "AWS key",
            Field::AwsSecretAccessKey => "Secret",
            Field::AwsSessionToken => "Session",
            Field::ModelId => "Model ID",
            Field::TpmLimit => "TPM limit",
            Field::Priority => "Priority",
            Field::Enabled => "Enabled",
            Field::Button => "",
        }
    }

    /// Grey text shown in an empty field.
    pub fn placeholder(self) -> &'static str {
        match self {
            Field::Name => "e.g. westus-fallback",
            Field::ApiBase => "https://….openai.azure.com/openai/v1",
            Field::ApiVersion => "e.g. 2024-10-21 for the classic API; empty for /openai/v1",
            Field::Region => "e.g. us-east-1 (Bedrock), us-east5 (Vertex)",
            Field::Project => "the Google Cloud project ID",
            Field::Credentials => "file:PATH of a service-account key file",
            Field::ApiKey => "env:VAR, file:PATH or the key (optional)",
            Field::AwsAccessKeyId => "env:AWS_ACCESS_KEY_ID, file:PATH or the key ID",
            Field::AwsSecretAccessKey => "env:AWS_SECRET_ACCESS_KEY, file:PATH or the secret",
            Field::AwsSessionToken => "env:AWS_SESSION_TOKEN … (optional)",
            Field::ModelId => "what the upstream calls the model",
            Field::TpmLimit => "tokens per minute (optional)",
            Field::Priority => "1 (the default tier; lower is tried first)",
            _ => "",
        }
    }

    /// The field's name in the config, as `FieldError` names it.
    pub fn config_name(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Provider => "provider",
            Field::ApiBase => "api_base",
            Field::ApiVersion => "api_version",
            Field::Region => "region",
            Field::Project => "project",
            Field::Credentials => "credentials",
            Field::ApiKey => "api_key",
            Field::AwsAccessKeyId => "aws_access_key_id",
            Field::AwsSecretAccessKey => "aws_secret_access_key",
            Field::AwsSessionToken => "aws_session_token",
            Field::ModelId => "model_id",
            Field::TpmLimit => "tpm_limit",
            Field::Priority => "priority",
            Field::Enabled => "enabled",
            Field::Button => "",
        }
    }

    pub fn from_config_name(name: &str) -> Option<Field> {
        Field::ALL
            .into_iter()
            .find(|f| *f != Field::Button && f.config_name() == name)
    }

    pub fn is_choice(self) -> bool {
        matches!(self, Field::Provider | Field::Enabled)
    }

    pub fn is_text(self) -> bool {
        !self.is_choice() && self != Field::Button
    }

    /// Whether a deployment of `provider` has this field.
    pub fn applies_to(self, provider: Provider) -> bool {
        match self {
            Field::ApiVersion => provider == Provider::Azure,
            Field::Region => matches!(provider, Provider::Bedrock | Provider::Vertex),
            Field::Project | Field::Credentials => provider == Provider::Vertex,
            // Vertex signs in with its credentials file.
            Field::ApiKey => provider != Provider::Vertex,
            Field::AwsAccessKeyId | Field::AwsSecretAccessKey | Field::AwsSessionToken => {
                provider == Provider::Bedrock
            }
            _ => true,
        }
    }
}

/// Where the form is in its test-then-save flow.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Not tested (or changed since the last test).
    Untested {
        changed_after_pass: bool,
    },
    Testing,
    Failed(TestResult),
    /// The test passed: the button reads Save.
    Passed(TestResult),
    Saving,
    /// The save was refused (kept next to the button; field errors go to the field).
    SaveFailed(String),
}

#[derive(Debug, Clone)]
pub struct Form {
    /// The model the deployment is added to.
    pub model: String,
    /// The names the model has already.
    pub taken: Vec<String>,
    /// The tiers the model's deployments are in, ascending (for the
    /// Priority field's hint).
    pub tiers: Vec<u32>,
    pub focus: Field,
    pub name: Input,
    pub provider: Provider,
    pub api_base: Input,
    pub api_version: Input,
    pub region: Input,
    pub project: Input,
    pub credentials: Input,
    pub api_key: Input,
    pub aws_access_key_id: Input,
    pub aws_secret_access_key: Input,
    pub aws_session_token: Input,
    pub model_id: Input,
    pub tpm_limit: Input,
    /// Empty: the default tier, 1 (and no `priority` written).
    pub priority: Input,
    /// The model ID is still the suggestion from the model's other
    /// deployments: typing replaces it, an editing key (→, End, Backspace)
    /// accepts it for editing, moving on keeps it.
    pub model_id_suggested: bool,
    pub enabled: bool,
    /// Bumped on every change, so a test of older values is ignored.
    pub generation: u64,
    pub status: Status,
    /// The one inline error: the field it belongs to and what is wrong.
    pub error: Option<(Field, String)>,
}

/// What pressing the button asks the run loop to do.
#[derive(Debug, Clone)]
pub enum Submit {
    Test(DeploymentSpec),
    Save(DeploymentSpec),
}

impl Form {
    /// An empty form for `model`, with the defaults of the contract and the
    /// model ID prefilled from the model's other deployments when they agree.
    pub fn new(model: &str, taken: Vec<String>, model_id: Option<&str>) -> Self {
        Form {
            model: model.to_string(),
            taken,
            tiers: Vec::new(),
            focus: Field::Name,
            name: Input::default(),
            provider: Provider::OpenAi,
            api_base: Input::default(),
            api_version: Input::default(),
            region: Input::default(),
            project: Input::default(),
            credentials: Input::default(),
            api_key: Input::default(),
            aws_access_key_id: Input::default(),
            aws_secret_access_key: Input::default(),
            aws_session_token: Input::default(),
            model_id: Input::new(model_id.unwrap_or_default().to_string()),
            tpm_limit: Input::default(),
            priority: Input::default(),
            model_id_suggested: model_id.is_some_and(|m| !m.is_empty()),
            enabled: true,
            generation: 0,
            status: Status::Untested {
                changed_after_pass: false,
            },
            error: None,
        }
    }

    pub fn input(&self, field: Field) -> Option<&Input> {
        match field {
            Field::Name => Some(&self.name),
            Field::ApiBase => Some(&self.api_base),
            Field::ApiVersion => Some(&self.api_version),
            Field::Region => Some(&self.region),
            Field::Project => Some(&self.project),
            Field::Credentials => Some(&self.credentials),
            Field::ApiKey => Some(&self.api_key),
            Field::AwsAccessKeyId => Some(&self.aws_access_key_id),
            Field::AwsSecretAccessKey => Some(&self.aws_secret_access_key),
            Field::AwsSessionToken => Some(&self.aws_session_token),
            Field::ModelId => Some(&self.model_id),
            Field::TpmLimit => Some(&self.tpm_limit),
            Field::Priority => Some(&self.priority),
            _ => None,
        }
    }

    fn input_mut(&mut self, field: Field) -> Option<&mut Input> {
        match field {
            Field::Name => Some(&mut self.name),
            Field::ApiBase => Some(&mut self.api_base),
            Field::ApiVersion => Some(&mut self.api_version),
            Field::Region => Some(&mut self.region),
            Field::Project => Some(&mut self.project),
            Field::Credentials => Some(&mut self.credentials),
            Field::ApiKey => Some(&mut self.api_key),
            Field::AwsAccessKeyId => Some(&mut self.aws_access_key_id),
            Field::AwsSecretAccessKey => Some(&mut self.aws_secret_access_key),
            Field::AwsSessionToken => Some(&mut self.aws_session_token),
            Field::ModelId => Some(&mut self.model_id),
            Field::TpmLimit => Some(&mut self.tpm_limit),
            Field::Priority => Some(&mut self.priority),
            _ => None,
        }
    }

    /// The fields this form shows, in order: those of its provider.
    pub fn fields(&self) -> Vec<Field> {
        Field::ALL
            .into_iter()
            .filter(|f| f.applies_to(self.provider))
            .collect()
    }

    fn step_focus(&mut self, forward: bool) {
        let fields = self.fields();
        let n = fields.len();
        let at = fields.iter().position(|f| *f == self.focus).unwrap_or(0);
        self.focus = fields[if forward {
            (at + 1) % n
        } else {
            (at + n - 1) % n
        }];
    }

    pub fn next(&mut self) {
        self.step_focus(true);
    }

    pub fn prev(&mut self) {
        self.step_focus(false);
    }

    pub fn busy(&self) -> bool {
        matches!(self.status, Status::Testing | Status::Saving)
    }

    /// Something changed: a passed test no longer counts.
    fn changed(&mut self) {
        self.generation += 1;
        let after_pass = match &self.status {
            Status::Passed(_) => true,
            Status::Untested { changed_after_pass } => *changed_after_pass,
            _ => false,
        };
        self.status = Status::Untested {
            changed_after_pass: after_pass,
        };
        if self.error.as_ref().is_some_and(|(f, _)| *f == self.focus) {
            self.error = None;
        }
    }

    /// Edits the focused text field.
    pub fn edit(&mut self, req: InputRequest) {
        let focus = self.focus;
        if matches!(req, InputRequest::InsertChar(_)) {
            self.drop_suggestion();
        } else if focus == Field::ModelId {
            self.model_id_suggested = false;
        }
        let Some(input) = self.input_mut(focus) else {
            return;
        };
        if input.handle(req).is_some_and(|c| c.value) {
            self.changed();
        }
    }

    /// Typing into a suggested model ID starts it afresh.
    fn drop_suggestion(&mut self) {
        if self.focus == Field::ModelId && self.model_id_suggested {
            self.model_id_suggested = false;
            self.model_id = Input::default();
        }
    }

    /// Pasted text goes into the focused text field (newlines dropped).
    pub fn paste(&mut self, text: &str) {
        let focus = self.focus;
        if text.chars().any(|c| !c.is_control()) {
            self.drop_suggestion();
        }
        let Some(input) = self.input_mut(focus) else {
            return;
        };
        let mut any = false;
        for c in text.chars().filter(|c| !c.is_control()) {
            any |= input.handle(InputRequest::InsertChar(c)).is_some();
        }
        if any {
            self.changed();
        }
    }

    /// Changes the focused choice.
    pub fn cycle(&mut self) {
        match self.focus {
            Field::Provider => {
                let all = Provider::ALL;
                let at = all.iter().position(|p| *p == self.provider).unwrap_or(0);
                self.provider = all[(at + 1) % all.len()];
            }
            Field::Enabled => self.enabled = !self.enabled,
            _ => return,
        }
        self.changed();
    }

    pub fn button_label(&self) -> &'static str {
        match self.status {
            Status::Passed(_) | Status::Saving | Status::SaveFailed(_) => "Save",
            _ => "Test & continue",
        }
    }

    /// The spec the fields describe, or the first field at fault.
    pub fn spec(&self) -> Result<DeploymentSpec, (Field, String)> {
        let text = |i: &Input| i.value().trim().to_string();
        let optional = |i: &Input| Some(text(i)).filter(|s| !s.is_empty());
        // What a field of another provider still holds is not sent.
        let shown = |f: Field, i: &Input| optional(i).filter(|_| f.applies_to(self.provider));
        let tpm_limit = match optional(&self.tpm_limit) {
            None => None,
            Some(s) => match s.replace(['_', ','], "").parse::<i64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err((
                        Field::TpmLimit,
                        "must be a positive whole number, or empty for no limit".into(),
                    ));
                }
            },
        };
        // Left empty, the default tier: nothing written. The range is the
        // config's rule (`validate` below says it).
        let priority = match optional(&self.priority) {
            None => None,
            // `T2` as the panes write it is tier 2.
            Some(s) => match s.trim_start_matches(['T', 't']).parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    return Err((
                        Field::Priority,
                        "must be a whole number, lower is tried first; empty for the default, 1"
                            .into(),
                    ));
                }
            },
        };
        let spec = DeploymentSpec {
            name: text(&self.name),
            provider: self.provider,
            api_base: text(&self.api_base),
            api_version: optional(&self.api_version).filter(|_| self.provider == Provider::Azure),
            api_key: shown(Field::ApiKey, &self.api_key),
            model_id: text(&self.model_id),
            tpm_limit,
            enabled: Some(self.enabled),
            region: shown(Field::Region, &self.region),
            aws_access_key_id: shown(Field::AwsAccessKeyId, &self.aws_access_key_id),
            aws_secret_access_key: shown(Field::AwsSecretAccessKey, &self.aws_secret_access_key),
            aws_session_token: shown(Field::AwsSessionToken, &self.aws_session_token),
            project: shown(Field::Project, &self.project),
            credentials: shown(Field::Credentials, &self.credentials),
            priority,
            ..DeploymentSpec::default()
        };
        spec.validate().map_err(|e| {
            let field = Field::from_config_name(&e.field).unwrap_or(Field::Button);
            (field, e.message)
        })?;
        if self.taken.contains(&spec.name) {
            return Err((
                Field::Name,
                format!("`{}` already has a deployment by this name", self.model),
            ));
        }
        Ok(spec)
    }

    /// `Enter`: on a field, the next one; on the button, test or save.
    pub fn submit(&mut self) -> Option<Submit> {
        if self.focus != Field::Button {
            self.next();
            return None;
        }
        if self.busy() {
            return None;
        }
        match self.spec() {
            Err((field, message)) => {
                self.focus = if field == Field::Button {
                    Field::Name
                } else {
                    field
                };
                self.error = Some((field, message));
                None
            }
            Ok(spec) => {
                self.error = None;
                if matches!(self.status, Status::Passed(_) | Status::SaveFailed(_)) {
                    self.status = Status::Saving;
                    Some(Submit::Save(spec))
                } else {
                    self.status = Status::Testing;
                    Some(Submit::Test(spec))
                }
            }
        }
    }

    /// The result of the test of `generation`; older ones are dropped.
    pub fn tested(&mut self, generation: u64, result: Result<TestResult, FieldMessage>) {
        if generation != self.generation || self.status != Status::Testing {
            return;
        }
        match result {
            Ok(r) if r.ok => self.status = Status::Passed(r),
            Ok(r) => self.status = Status::Failed(r),
            Err(e) => self.refused(e, false),
        }
    }

    /// A save that did not go through: back to the field at fault.
    pub fn save_failed(&mut self, generation: u64, e: FieldMessage) {
        if generation != self.generation || self.status != Status::Saving {
            return;
        }
        self.refused(e, true);
    }

    fn refused(&mut self, e: FieldMessage, saving: bool) {
        match e.field.as_deref().and_then(Field::from_config_name) {
            Some(field) => {
                self.error = Some((field, e.message));
                self.focus = field;
                self.status = Status::Untested {
                    changed_after_pass: false,
                };
            }
            None if saving => self.status = Status::SaveFailed(e.message),
            None => {
                self.status = Status::Failed(TestResult {
                    ok: false,
                    status: None,
                    latency_ms: 0.0,
                    model: None,
                    message: e.message,
                })
            }
        }
    }
}

/// How a key is shown while typed: `env:` and `file:` references as they
/// are (they are not secret), anything else as dots.
pub fn masked_key(value: &str) -> String {
    if value.starts_with("env:") || value.starts_with("file:") {
        value.to_string()
    } else {
        "•".repeat(value.chars().count())
    }
}
