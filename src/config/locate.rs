//! Where things are in the config text.
//!
//! The config is deserialized into plain structs, and validated on those;
//! errors name a [`FieldPath`] such as `models[0].deployments[1].tpm_limit`.
//! [`SpannedDoc`] keeps the parsed document with byte spans so that a path
//! can be turned into a line (for validation errors), and a byte offset into
//! a path (for serde errors, which carry a span but no path).

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A field in the config: keys and array indices from the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl FieldPath {
    pub(crate) fn key(&self, key: &str) -> FieldPath {
        self.with(Segment::Key(key.to_string()))
    }

    pub(crate) fn index(&self, index: usize) -> FieldPath {
        self.with(Segment::Index(index))
    }

    fn with(&self, segment: Segment) -> FieldPath {
        let mut segments = self.0.clone();
        segments.push(segment);
        FieldPath(segments)
    }

    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The last key, ignoring array indices: `server.api_keys[1]` → `api_keys`.
    pub(crate) fn last_key(&self) -> Option<&str> {
        self.0.iter().rev().find_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
    }

    /// Whether the path ends in an array index.
    pub(crate) fn ends_in_index(&self) -> bool {
        matches!(self.0.last(), Some(Segment::Index(_)))
    }

    fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    fn pop(&mut self) {
        self.0.pop();
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The config text parsed with the byte span of every key and value.
pub(crate) struct SpannedDoc<'t> {
    text: &'t str,
    root: Spanned<DeTable<'t>>,
}

impl<'t> SpannedDoc<'t> {
    pub(crate) fn parse(text: &'t str) -> Result<SpannedDoc<'t>, toml::de::Error> {
        Ok(SpannedDoc {
            text,
            root: DeTable::parse(text)?,
        })
    }

    /// The 1-based line of a byte offset.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// The line of a field; of its closest written parent when the field
    /// itself is absent (a missing key is best shown at its table).
    pub(crate) fn line_of_path(&self, path: &FieldPath) -> Option<usize> {
        let mut span = None;
        // None stands for the root table, which has no span of its own.
        let mut current: Option<&Spanned<DeValue<'t>>> = None;
        for segment in &path.0 {
            let next = match (segment, current.map(Spanned::get_ref)) {
                (Segment::Key(k), None) => self.root.get_ref().get(k.as_str()),
                (Segment::Key(k), Some(DeValue::Table(t))) => t.get(k.as_str()),
                (Segment::Index(i), Some(DeValue::Array(a))) => a.get(*i),
                _ => None,
            };
            let Some(next) = next else { break };
            span = Some(next.span());
            current = Some(next);
        }
        span.map(|s| self.line_of(s.start))
    }

    /// The deepest field whose key or value covers `offset`; the root when
    /// none does.
    pub(crate) fn path_at(&self, offset: usize) -> FieldPath {
        let mut path = FieldPath::default();
        if !find_in_table(self.root.get_ref(), offset, &mut path) {
            path = FieldPath::default();
        }
        path
    }
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

/// Depth-first: children before their parent, because a table's span (its
/// `[[header]]`) says less than the key inside it.
fn find_in_table(table: &DeTable<'_>, offset: usize, path: &mut FieldPath) -> bool {
    for (key, value) in table.iter() {
        path.push(Segment::Key(key.get_ref().to_string()));
        if covers(&key.span(), offset) || find_in_value(value, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut FieldPath) -> bool {
    let inside = match value.get_ref() {
        DeValue::Table(t) => find_in_table(t, offset, path),
        DeValue::Array(a) => a.iter().enumerate().any(|(i, element)| {
            path.push(Segment::Index(i));
            let found = find_in_value(element, offset, path);
            if !found {
                path.pop();
            }
            found
        }),
        _ => false,
    };
    inside || covers(&value.span(), offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[server]\nlisten = \"x\"\n\n[[models]]\nname = \"a\"\n\n[[models.deployments]]\nname = \"d\"\ntpm_limit = 5\n\n[[models]]\nname = \"b\"\ndeployments = [{ name = \"i\" }, { name = \"j\", tpm_limit = 1 }]\n";

    fn path(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn paths_display_like_the_config() {
        let p = FieldPath::default()
            .key("models")
            .index(0)
            .key("deployments")
            .index(1)
            .key("tpm_limit");
        assert_eq!(p.to_string(), "models[0].deployments[1].tpm_limit");
        assert_eq!(p.last_key(), Some("tpm_limit"));
    }

    #[test]
    fn finds_lines_of_paths() {
        let doc = SpannedDoc::parse(TEXT).unwrap();
        let root = FieldPath::default();
        assert_eq!(doc.line_of_path(&root.key("server").key("listen")), Some(2));
        let d = root.key("models").index(0).key("deployments").index(0);
        assert_eq!(doc.line_of_path(&d.key("tpm_limit")), Some(9));
        // Absent field: its table's header.
        assert_eq!(doc.line_of_path(&d.key("enabled")), Some(7));
        let inline = root
            .key("models")
            .index(1)
            .key("deployments")
            .index(1)
            .key("tpm_limit");
        assert_eq!(doc.line_of_path(&inline), Some(13));
        assert_eq!(doc.line_of_path(&root.key("routing")), None);
    }

    #[test]
    fn finds_paths_of_offsets() {
        let doc = SpannedDoc::parse(TEXT).unwrap();
        let at = |needle: &str| doc.path_at(TEXT.find(needle).unwrap()).to_string();
        assert_eq!(
            at("tpm_limit = 5"),
            path("models[0].deployments[0].tpm_limit")
        );
        assert_eq!(at("5\n"), path("models[0].deployments[0].tpm_limit"));
        assert_eq!(
            at("[[models.deployments]]"),
            path("models[0].deployments[0]")
        );
        assert_eq!(
            at("tpm_limit = 1"),
            path("models[1].deployments[1].tpm_limit")
        );
        assert_eq!(at("\"x\""), path("server.listen"));
        assert_eq!(doc.path_at(0).to_string(), path("server"));
    }
}
