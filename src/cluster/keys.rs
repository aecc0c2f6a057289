//! The names of a model's keys in Redis: all under one hash tag,
//! `{sb:<cluster>:<model>}`, so that Redis Cluster keeps them on one slot
//! and a function may touch them all (what each holds: `lua/lib.lua`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::router::SessionKey;

/// The keys of one model: one hash tag, so that Redis Cluster keeps them
/// on one slot and a function may touch them all. Cheap to clone; the
/// names every call sends (the packed state, each deployment's three keys)
/// are made once and kept, not formatted and escaped per request (~9k
/// instructions of a clustered request, measured with callgrind).
#[derive(Debug, Clone)]
pub struct ModelKeys(Arc<Names>);

#[derive(Debug)]
struct Names {
    tag: String,
    state: String,
    waiting: String,
    /// Per deployment: its windows, probe and leases keys.
    deps: RwLock<HashMap<String, Arc<[String; 3]>>>,
}

impl PartialEq for ModelKeys {
    fn eq(&self, other: &ModelKeys) -> bool {
        self.0.tag == other.0.tag
    }
}

impl Eq for ModelKeys {}

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
        let tag = format!("{{sb:{}:{}}}", escape(cluster), escape(model));
        ModelKeys(Arc::new(Names {
            state: format!("{tag}:d"),
            waiting: format!("{tag}:q"),
            tag,
            deps: RwLock::default(),
        }))
    }

    #[cfg(test)]
    fn key(&self, kind: &str) -> String {
        format!("{}:{kind}", self.0.tag)
    }

    /// Every deployment's small state, packed (`T:d`).
    pub(super) fn state(&self) -> &str {
        &self.0.state
    }

    /// The hash tag, as the functions' messages name the model.
    pub fn tag(&self) -> &str {
        &self.0.tag
    }

    /// Marks the model as waited for (see [`super::freed`]).
    pub(super) fn waiting(&self) -> &str {
        &self.0.waiting
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
        format!("{}:{kind}:{}", self.0.tag, escape(dep))
    }

    /// A deployment's windows (`t`), probe (`p`) and leases (`l`) keys,
    /// made on first use and kept.
    pub(super) fn dep_keys(&self, dep: &str) -> Arc<[String; 3]> {
        let known = self.0.deps.read().unwrap_or_else(|e| e.into_inner());
        if let Some(keys) = known.get(dep) {
            return keys.clone();
        }
        drop(known);
        let keys = Arc::new(["t", "p", "l"].map(|kind| self.dep(kind, dep)));
        let mut known = self.0.deps.write().unwrap_or_else(|e| e.into_inner());
        // Deployments removed from the config leave their few names behind
        // until the model goes: bounded by the deployments ever configured.
        known.entry(dep.to_string()).or_insert(keys).clone()
    }

    /// A session's pin.
    pub(super) fn pin(&self, session: SessionKey) -> String {
        format!("{}:pin:{:016x}", self.0.tag, session.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag_whatever_the_names() {
        let k = ModelKeys::new("prod", "gpt-4o}{x");
        let tag = |key: &str| key[key.find('{').unwrap() + 1..key.find('}').unwrap()].to_string();
        assert_eq!(tag(&k.key("d")), tag(&k.dep("t", "east}")));
        assert_eq!(tag(&k.key("d")), "sb:prod:gpt-4o%7D%7Bx");
        assert_ne!(k.dep("t", "a"), k.dep("t", "b"));
        assert_eq!(tag(k.waiting()), tag(&k.key("d")));
        assert_eq!(k.waiting(), k.key("q"));
        assert_eq!(k.state(), k.key("d"));
        let kept = k.dep_keys("east}");
        assert_eq!(
            *kept,
            [
                k.dep("t", "east}"),
                k.dep("p", "east}"),
                k.dep("l", "east}")
            ]
        );
        assert!(
            Arc::ptr_eq(&kept, &k.dep_keys("east}")),
            "made once, then kept"
        );
    }

    #[test]
    fn a_models_tag_gives_back_its_name_in_its_cluster_only() {
        for (cluster, model) in [
            ("prod", "gpt-4o"),
            ("prod", "gpt-4o}{x%7B"),
            ("a:b", "m:n"),
            ("{x}", "%"),
        ] {
            let tag = ModelKeys::new(cluster, model).tag().to_string();
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
