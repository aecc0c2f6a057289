//! The names of a model's keys in Redis: all under one hash tag,
//! `{sb:<cluster>:<model>}`, so that Redis Cluster keeps them on one slot
//! and a function may touch them all (what each holds: `lua/lib.lua`).

use crate::router::SessionKey;

/// The keys of one model: one hash tag, so that Redis Cluster keeps them
/// on one slot and a function may touch them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelKeys {
    tag: String,
}

/// `{`, `}` and `%` escaped: a name must not end the hash tag early.
fn escape(name: &str) -> String {
    name.replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

/// [`escape`] undone.
fn unescape(name: &str) -> String {
    name.replace("%7B", "{")
        .replace("%7D", "}")
        .replace("%25", "%")
}

impl ModelKeys {
    pub fn new(cluster: &str, model: &str) -> ModelKeys {
        ModelKeys {
            tag: format!("{{sb:{}:{}}}", escape(cluster), escape(model)),
        }
    }

    pub(super) fn key(&self, kind: &str) -> String {
        format!("{}:{kind}", self.tag)
    }

    /// The hash tag, as the functions' messages name the model.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Marks the model as waited for (see [`super::freed`]).
    pub(super) fn waiting(&self) -> String {
        self.key("q")
    }

    /// The model whose hash tag is `tag` in cluster `cluster`; None when
    /// the tag is another cluster's, or not a model's.
    pub fn model_of(cluster: &str, tag: &str) -> Option<String> {
        let prefix = format!("{{sb:{}:", escape(cluster));
        let model = tag.strip_prefix(&prefix)?.strip_suffix('}')?;
        // An escaped name has no brace left.
        (!model.contains(['{', '}'])).then(|| unescape(model))
    }

    pub(super) fn dep(&self, kind: &str, dep: &str) -> String {
        format!("{}:{kind}:{}", self.tag, escape(dep))
    }

    /// A session's pin.
    pub(super) fn pin(&self, session: SessionKey) -> String {
        format!("{}:pin:{:016x}", self.tag, session.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag_whatever_the_names() {
        let k = ModelKeys::new("prod", "gpt-4o}{x");
        let tag = |key: &str| key[key.find('{').unwrap() + 1..key.find('}').unwrap()].to_string();
        assert_eq!(tag(&k.key("s")), tag(&k.dep("w", "east}")));
        assert_eq!(tag(&k.key("s")), "sb:prod:gpt-4o%7D%7Bx");
        assert_ne!(k.dep("w", "a"), k.dep("w", "b"));
        assert_eq!(tag(&k.waiting()), tag(&k.key("s")));
    }

    #[test]
    fn a_models_tag_gives_back_its_name_in_its_cluster_only() {
        for (cluster, model) in [
            ("prod", "gpt-4o"),
            ("prod", "gpt-4o}{x%7B"),
            ("a:b", "m:n"),
            ("{x}", "%"),
        ] {
            let tag = ModelKeys::new(cluster, model).tag;
            assert_eq!(
                ModelKeys::model_of(cluster, &tag).as_deref(),
                Some(model),
                "{tag}"
            );
            assert_eq!(ModelKeys::model_of("other", &tag), None, "{tag}");
        }
        assert_eq!(ModelKeys::model_of("prod", "{sb:prod:a}b}"), None);
        assert_eq!(ModelKeys::model_of("prod", "{sb:prod}"), None);
    }
}
