//! Changes the program makes to the user's config file: toggling a
//! deployment, adding one.
//!
//! The file belongs to the user, so every edit
//! - starts from the file as it is on disk now, so a hand edit made since the
//!   program loaded it is kept;
//! - goes through `toml_edit`, which keeps comments, order and formatting;
//! - is written atomically (temporary file in the same folder, fsync, rename,
//!   fsync of the folder), so a crash leaves the old file or the new one;
//! - gets mode 0600 when the file holds a literal key, and otherwise keeps
//!   the file's permissions.
//!
//! Both the `[[models]]` / `[[models.deployments]]` layout and inline arrays
//! (`deployments = [{ … }]`) are understood.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use toml_edit::{
    ArrayOfTables, DocumentMut, InlineTable, Item, RawString, Table, TableLike, Value,
};

use super::deployment::{DeploymentSpec, FieldError};
use super::secret::{SECRET_FIELDS, is_literal_reference};

/// Mode of a file that holds a literal key: readable by its owner only.
#[cfg(unix)]
const PRIVATE_MODE: u32 = 0o600;
/// A blank line before a new `[[models.deployments]]` header.
const DEFAULT_TABLE_PREFIX: &str = "\n";
/// Attempts at a fresh temporary name before giving up.
const TEMP_NAME_ATTEMPTS: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// The file on disk is not valid TOML (say, a hand edit in progress).
    #[error("{}{}: invalid TOML: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("model {model} not found in {}", path.display())]
    ModelNotFound { model: String, path: PathBuf },
    #[error("deployment {deployment} not found in model {model} in {}", path.display())]
    DeploymentNotFound {
        model: String,
        deployment: String,
        path: PathBuf,
    },
    #[error("duplicate deployment: model {model} already has a deployment named {deployment} in {}", path.display())]
    DuplicateDeployment {
        model: String,
        deployment: String,
        path: PathBuf,
    },
    /// The file is TOML but not laid out as a switchboard config, or the
    /// edit would not read back as intended; the file is left as it was.
    #[error("{}: {message}; the file was not changed", path.display())]
    Layout { path: PathBuf, message: String },
    #[error("invalid deployment: {0}")]
    InvalidSpec(#[from] FieldError),
}

impl PersistError {
    fn model_not_found(path: &Path, model: &str) -> PersistError {
        PersistError::ModelNotFound {
            model: model.to_string(),
            path: path.to_path_buf(),
        }
    }

    fn layout(path: &Path, message: String) -> PersistError {
        PersistError::Layout {
            path: path.to_path_buf(),
            message,
        }
    }
}

/// Sets `enabled = true/false` in a deployment's table, inserting the key
/// when it is absent. A trailing comment on the line is kept.
pub fn set_enabled(
    path: &Path,
    model: &str,
    deployment: &str,
    enabled: bool,
) -> Result<(), PersistError> {
    edit(path, |doc| {
        let mut entry =
            find_model(doc, model).ok_or_else(|| PersistError::model_not_found(path, model))?;
        let table = entry
            .deployments()
            .into_iter()
            .find(|t| name_of(&**t) == Some(deployment))
            .ok_or_else(|| PersistError::DeploymentNotFound {
                model: model.to_string(),
                deployment: deployment.to_string(),
                path: path.to_path_buf(),
            })?;
        set_bool(table, "enabled", enabled);
        Ok(())
    })
}

/// Appends a deployment to a model, fields in the order name, provider,
/// api_base, api_key (the reference as written, not the resolved key),
/// model_id, tpm_limit (when set), enabled.
///
/// The caller checks the key resolves ([`DeploymentSpec::resolve`]); this
/// checks the rest, so that the file never gets a deployment it cannot load.
pub fn add_deployment(path: &Path, model: &str, spec: &DeploymentSpec) -> Result<(), PersistError> {
    spec.validate()?;
    edit(path, |doc| {
        let not_found = || PersistError::model_not_found(path, model);
        let mut entry = find_model(doc, model).ok_or_else(not_found)?;
        let name = spec.name.as_str();
        if entry
            .deployments()
            .iter()
            .any(|t| name_of(&**t) == Some(name))
        {
            return Err(PersistError::DuplicateDeployment {
                model: model.to_string(),
                deployment: spec.name.clone(),
                path: path.to_path_buf(),
            });
        }
        let prefix = match entry.section_end() {
            Some(position) => take_gap_after(doc, position),
            None => DEFAULT_TABLE_PREFIX.to_string(),
        };
        find_model(doc, model)
            .ok_or_else(not_found)?
            .push_deployment(spec, &prefix)
            .map_err(|m| PersistError::layout(path, m))?;
        check_landed(doc, model, name).map_err(|m| PersistError::layout(path, m))
    })
}

/// Re-reads the file, applies `change`, and writes the result back
/// atomically, unless it is byte for byte what is on disk already.
fn edit(
    path: &Path,
    change: impl FnOnce(&mut DocumentMut) -> Result<(), PersistError>,
) -> Result<(), PersistError> {
    let read_error = |source| PersistError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Write to the real file: renaming over a symlink would replace the link.
    let target = fs::canonicalize(path).map_err(read_error)?;
    let text = fs::read_to_string(&target).map_err(read_error)?;
    let permissions = fs::metadata(&target).map_err(read_error)?.permissions();
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| PersistError::Parse {
                path: path.to_path_buf(),
                line: e.span().map(|s| super::locate::line_of(&text, s.start)),
                // `message()`, not `Display`: the latter quotes the line, which may hold a key.
                message: e.message().to_string(),
            })?;
    change(&mut doc)?;
    let rendered = doc.to_string();
    if rendered == text {
        return Ok(());
    }
    let permissions = if holds_literal_key(doc.as_table()) {
        private(permissions)
    } else {
        permissions
    };
    write_atomically(&target, rendered.as_bytes(), permissions).map_err(|source| {
        PersistError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// A model's table, in either layout.
enum ModelEntry<'d> {
    Table(&'d mut Table),
    Inline(&'d mut InlineTable),
}

fn find_model<'d>(doc: &'d mut DocumentMut, name: &str) -> Option<ModelEntry<'d>> {
    match doc.get_mut("models")? {
        Item::ArrayOfTables(models) => models
            .iter_mut()
            .find(|t| name_of(&**t) == Some(name))
            .map(ModelEntry::Table),
        Item::Value(Value::Array(models)) => models
            .iter_mut()
            .filter_map(Value::as_inline_table_mut)
            .find(|t| name_of(&**t) == Some(name))
            .map(ModelEntry::Inline),
        _ => None,
    }
}

fn name_of(table: &dyn TableLike) -> Option<&str> {
    table.get("name")?.as_str()
}

impl ModelEntry<'_> {
    fn table_like(&mut self) -> &mut dyn TableLike {
        match self {
            ModelEntry::Table(t) => *t,
            ModelEntry::Inline(t) => *t,
        }
    }

    /// The model's deployment tables, whichever way they are written.
    fn deployments(&mut self) -> Vec<&mut dyn TableLike> {
        match self.table_like().get_mut("deployments") {
            Some(Item::ArrayOfTables(tables)) => {
                tables.iter_mut().map(|t| t as &mut dyn TableLike).collect()
            }
            Some(Item::Value(Value::Array(values))) => values
                .iter_mut()
                .filter_map(Value::as_inline_table_mut)
                .map(|t| t as &mut dyn TableLike)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The document position of the last table in this model's section
    /// (its last deployment, or the model itself): a new deployment table is
    /// rendered right after it. None when the new deployment is not a table.
    fn section_end(&self) -> Option<isize> {
        let ModelEntry::Table(model) = self else {
            return None;
        };
        match model.get("deployments") {
            Some(Item::ArrayOfTables(tables)) if !tables.is_empty() => {
                tables.iter().last().and_then(Table::position)
            }
            None | Some(Item::ArrayOfTables(_)) => model.position(),
            Some(_) => None,
        }
    }

    /// Appends the deployment; `prefix` goes before a new table's header.
    fn push_deployment(&mut self, spec: &DeploymentSpec, prefix: &str) -> Result<(), String> {
        let is_table = matches!(self, ModelEntry::Table(_));
        match self.table_like().get_mut("deployments") {
            Some(Item::ArrayOfTables(tables)) => tables.push(deployment_table(spec, prefix)),
            Some(Item::Value(Value::Array(values))) => push_inline(values, deployment_inline(spec)),
            Some(_) => return Err("the model's deployments are not an array".to_string()),
            None if is_table => {
                let mut tables = ArrayOfTables::new();
                tables.push(deployment_table(spec, prefix));
                self.table_like()
                    .insert("deployments", Item::ArrayOfTables(tables));
            }
            None => {
                let mut values = toml_edit::Array::new();
                values.push(deployment_inline(spec));
                self.table_like()
                    .insert("deployments", toml_edit::value(values));
            }
        }
        Ok(())
    }
}

/// Takes the comments that directly follow the section ending at table
/// `position` (a commented-out key, say) out of the gap before the next
/// table, and returns them as the prefix of a table inserted between the
/// two: they stay with their section, and the next table's own comments
/// stay with it. The file then changes by a pure insertion.
fn take_gap_after(doc: &mut DocumentMut, position: isize) -> String {
    let next = next_position(doc.as_table(), position)
        .and_then(|next| table_at_mut(doc.as_table_mut(), next));
    match next {
        Some(next) => {
            let gap = next
                .decor()
                .prefix()
                .and_then(RawString::as_str)
                .unwrap_or_default();
            let (above, below) = split_gap(gap);
            if above.is_empty() {
                return DEFAULT_TABLE_PREFIX.to_string();
            }
            let (above, below) = (above.to_string(), format!("\n{below}"));
            next.decor_mut().set_prefix(below);
            above
        }
        None => {
            // The section is last: what follows it is the end of the file,
            // where no header claims the lines right after the last key.
            let trailing = doc.trailing().as_str().unwrap_or_default();
            let (above, below) = match split_gap(trailing) {
                ("", all) => (all, ""),
                split => split,
            };
            let mut prefix = above.to_string();
            if !prefix.is_empty() && !prefix.ends_with('\n') {
                prefix.push('\n');
            }
            if !ends_with_blank_line(&prefix) {
                prefix.push('\n');
            }
            let below = if below.is_empty() {
                String::new()
            } else {
                format!("\n{below}")
            };
            doc.set_trailing(below);
            prefix
        }
    }
}

/// Splits the whitespace and comments between two tables after the first
/// blank line: lines above it follow the table above, lines below it
/// introduce the table below. No blank line: `("", gap)`.
fn split_gap(gap: &str) -> (&str, &str) {
    let mut end = 0;
    for line in gap.split_inclusive('\n') {
        end += line.len();
        if line.ends_with('\n') && line.trim().is_empty() {
            return gap.split_at(end);
        }
    }
    ("", gap)
}

fn ends_with_blank_line(text: &str) -> bool {
    text == "\n" || text.ends_with("\n\n") || text.ends_with("\n\r\n")
}

/// The smallest header position after `after`: the table rendered next.
fn next_position(root: &Table, after: isize) -> Option<isize> {
    let mut positions = Vec::new();
    for item in root.iter().map(|(_, item)| item) {
        header_positions(item, &mut positions);
    }
    positions.into_iter().filter(|p| *p > after).min()
}

fn header_positions(item: &Item, out: &mut Vec<isize>) {
    let tables: Vec<&Table> = match item {
        Item::Table(t) => vec![t],
        Item::ArrayOfTables(tables) => tables.iter().collect(),
        _ => return,
    };
    for table in tables {
        // Implicit and dotted tables have no header of their own.
        if !table.is_implicit() && !table.is_dotted() {
            out.extend(table.position());
        }
        for (_, child) in table.iter() {
            header_positions(child, out);
        }
    }
}

/// The table with header position `position`, below `root`.
fn table_at_mut(root: &mut Table, position: isize) -> Option<&mut Table> {
    root.iter_mut()
        .find_map(|(_, item)| header_at_mut(item, position))
}

fn header_at_mut(item: &mut Item, position: isize) -> Option<&mut Table> {
    let tables: Vec<&mut Table> = match item {
        Item::Table(t) => vec![t],
        Item::ArrayOfTables(tables) => tables.iter_mut().collect(),
        _ => return None,
    };
    tables.into_iter().find_map(|table| {
        if table.position() == Some(position) && !table.is_implicit() && !table.is_dotted() {
            Some(table)
        } else {
            table_at_mut(table, position)
        }
    })
}

/// The spec's fields in the order the config documents them.
fn deployment_fields(spec: &DeploymentSpec) -> Vec<(&'static str, Value)> {
    let mut fields = vec![
        ("name", Value::from(spec.name.as_str())),
        ("provider", Value::from(spec.provider.as_str())),
    ];
    // A provider's default endpoint stays implicit, as the user left it.
    if !spec.api_base.trim().is_empty() {
        fields.push(("api_base", Value::from(spec.api_base.as_str())));
    }
    if let Some(version) = &spec.api_version {
        fields.push(("api_version", Value::from(version.as_str())));
    }
    for (field, value) in [
        ("region", &spec.region),
        ("project", &spec.project),
        ("credentials", &spec.credentials),
        ("api_key", &spec.api_key),
        ("aws_access_key_id", &spec.aws_access_key_id),
        ("aws_secret_access_key", &spec.aws_secret_access_key),
        ("aws_session_token", &spec.aws_session_token),
    ] {
        if let Some(v) = value {
            fields.push((field, Value::from(v.as_str())));
        }
    }
    fields.push(("model_id", Value::from(spec.model_id.as_str())));
    if let Some(limit) = spec.tpm_limit {
        fields.push(("tpm_limit", Value::from(limit)));
    }
    if let Some(priority) = spec.priority {
        fields.push(("priority", Value::from(priority)));
    }
    if let Some(cap) = spec.max_output_tokens {
        fields.push(("max_output_tokens", Value::from(cap)));
    }
    if let Some(way) = &spec.responses {
        fields.push(("responses", Value::from(way.as_str())));
    }
    fields.push(("enabled", Value::from(spec.enabled.unwrap_or(true))));
    for (field, value) in [
        ("first_byte_timeout_s", spec.first_byte_timeout_s),
        ("request_timeout_s", spec.request_timeout_s),
        ("stream_idle_timeout_s", spec.stream_idle_timeout_s),
    ] {
        if let Some(v) = value {
            fields.push((field, Value::from(v)));
        }
    }
    fields
}

fn deployment_table(spec: &DeploymentSpec, prefix: &str) -> Table {
    let mut table = Table::new();
    for (key, value) in deployment_fields(spec) {
        table.insert(key, Item::Value(value));
    }
    // With no position of its own, toml_edit renders the table right after
    // the one before it in the tree: the model's last deployment, or the
    // model. `check_landed` verifies it.
    table.decor_mut().set_prefix(prefix);
    table
}

fn deployment_inline(spec: &DeploymentSpec) -> InlineTable {
    let mut table = InlineTable::new();
    for (key, value) in deployment_fields(spec) {
        table.insert(key, value);
    }
    table
}

/// Appends to an inline array in the style of its last element, so that an
/// array written one element per line stays so.
fn push_inline(values: &mut toml_edit::Array, table: InlineTable) {
    let mut value = Value::InlineTable(table);
    if let Some(last) = values.iter_mut().last() {
        let prefix = last.decor().prefix().cloned();
        // Whitespace after the last element (before `]`) moves to the new last one.
        let suffix = last.decor().suffix().cloned();
        last.decor_mut().set_suffix("");
        if let Some(prefix) = prefix {
            value.decor_mut().set_prefix(prefix);
        }
        if let Some(suffix) = suffix {
            value.decor_mut().set_suffix(suffix);
        }
        values.push_formatted(value);
    } else {
        values.push(value);
    }
}

/// Sets a boolean, keeping the decor (spacing, trailing comment) of the
/// value it replaces.
fn set_bool(table: &mut dyn TableLike, key: &str, flag: bool) {
    if let Some(value) = table.get_mut(key).and_then(Item::as_value_mut) {
        let decor = value.decor().clone();
        *value = Value::from(flag);
        *value.decor_mut() = decor;
    } else {
        table.insert(key, toml_edit::value(flag));
    }
}

/// Renders the edited document, reads it back and checks that the new
/// deployment belongs to `model`: a table rendered in the wrong place would
/// silently move it to another model.
fn check_landed(doc: &DocumentMut, model: &str, deployment: &str) -> Result<(), String> {
    let mut reread: DocumentMut = doc.to_string().parse().map_err(|e: toml_edit::TomlError| {
        format!("the edited file would not parse: {}", e.message())
    })?;
    let landed = find_model(&mut reread, model).is_some_and(|mut m| {
        m.deployments()
            .iter()
            .any(|t| name_of(&**t) == Some(deployment))
    });
    if landed {
        Ok(())
    } else {
        Err(format!(
            "the new deployment {deployment} would not read back as part of model {model}"
        ))
    }
}

/// Whether any `api_key`, `api_keys` or `admin_key` holds a key itself
/// rather than an `env:` / `file:` reference.
fn holds_literal_key(table: &dyn TableLike) -> bool {
    table.iter().any(|(key, item)| {
        (SECRET_FIELDS.contains(&key) && item_holds_literal(item)) || nested_holds_literal(item)
    })
}

fn item_holds_literal(item: &Item) -> bool {
    match item.as_value() {
        Some(Value::String(s)) => is_literal_reference(s.value()),
        Some(Value::Array(values)) => values
            .iter()
            .any(|v| v.as_str().is_some_and(is_literal_reference)),
        _ => false,
    }
}

fn nested_holds_literal(item: &Item) -> bool {
    match item {
        Item::Table(t) => holds_literal_key(t),
        Item::ArrayOfTables(tables) => tables.iter().any(|t| holds_literal_key(t)),
        Item::Value(Value::InlineTable(t)) => holds_literal_key(t),
        Item::Value(Value::Array(values)) => values
            .iter()
            .filter_map(Value::as_inline_table)
            .any(|t| holds_literal_key(t)),
        _ => false,
    }
}

#[cfg(unix)]
fn private(_: Permissions) -> Permissions {
    use std::os::unix::fs::PermissionsExt;
    Permissions::from_mode(PRIVATE_MODE)
}

#[cfg(not(unix))]
fn private(permissions: Permissions) -> Permissions {
    permissions
}

/// Replaces `target` with `bytes`: a crash at any point leaves either the
/// old file or the new one, never a mix.
fn write_atomically(target: &Path, bytes: &[u8], permissions: Permissions) -> io::Result<()> {
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = TempFile::create(dir, target)?;
    temp.file.write_all(bytes)?;
    temp.file.set_permissions(permissions)?;
    temp.file.sync_all()?;
    fs::rename(&temp.path, target)?;
    temp.persisted();
    // The rename is done and visible; a folder that cannot be synced (some
    // file systems refuse) only weakens durability, so it is not an error.
    if let Err(e) = sync_dir(dir) {
        tracing::warn!(dir = %dir.display(), "could not fsync the config folder: {e}");
    }
    Ok(())
}

/// A temporary file next to the target, removed on drop unless renamed.
struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    fn create(dir: &Path, target: &Path) -> io::Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let stem = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config".to_string());
        let mut last_error = None;
        for _ in 0..TEMP_NAME_ATTEMPTS {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{stem}.{}.{n}.tmp", std::process::id()));
            match open_new(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        persisted: false,
                    });
                }
                // A leftover of an earlier run with the same pid: try the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary file name")))
    }

    fn persisted(&mut self) {
        self.persisted = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates a new file, private from the start: it may receive a key before
/// its final permissions are set.
fn open_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(PRIVATE_MODE);
    }
    options.open(path)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_split_after_their_first_blank_line() {
        assert_eq!(split_gap("# a\n\n# b\n"), ("# a\n\n", "# b\n"));
        assert_eq!(split_gap("\n# b\n"), ("\n", "# b\n"));
        assert_eq!(split_gap("# b\n"), ("", "# b\n"));
        // Indentation before a header is not a blank line.
        assert_eq!(split_gap("# b\n  "), ("", "# b\n  "));
        assert_eq!(split_gap("# a\r\n\r\n# b\r\n"), ("# a\r\n\r\n", "# b\r\n"));
    }

    #[test]
    fn literal_keys_are_found_in_every_layout() {
        let holds = |text: &str| holds_literal_key(text.parse::<DocumentMut>().unwrap().as_table());
        assert!(!holds(
            "[server]\napi_keys = [\"env:A\", \"file:k\"]\nadmin_key = \"env:B\"\n"
        ));
        assert!(holds("[server]\napi_keys = [\"env:A\", \"sk-1\"]\n"));
        assert!(holds("[server]\nadmin_key = \"sk-1\"\n"));
        assert!(holds(
            "[[models]]\nname = \"m\"\n[[models.deployments]]\napi_key = \"sk-1\"\n"
        ));
        assert!(holds(
            "models = [{ name = \"m\", deployments = [{ api_key = \"sk-1\" }] }]\n"
        ));
        assert!(!holds(
            "models = [{ name = \"sk-1\", deployments = [{ api_key = \"env:K\" }] }]\n"
        ));
    }

    #[test]
    fn a_file_without_a_final_newline_gets_a_well_formed_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        fs::write(&path, "[[models]]\nname = \"a\"\n[[models.deployments]]\nname = \"x\"\napi_base = \"http://h\"\nmodel_id = \"m\"").unwrap();
        let spec = DeploymentSpec {
            name: "y".into(),
            api_base: "http://h".into(),
            model_id: "m".into(),
            ..DeploymentSpec::default()
        };
        add_deployment(&path, "a", &spec).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("model_id = \"m\"\n\n[[models.deployments]]\nname = \"y\""),
            "{text}"
        );
    }
}
