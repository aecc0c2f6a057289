//! A small map by name, for the models and deployments of a config.

use std::sync::Arc;

/// Values by name, for the few models and deployments of a config. A
/// lookup compares pointers first: an event names its model and
/// deployments with the very `Arc`s the gateway holds, so the usual lookup
/// is a short scan without hashing or comparing text.
#[derive(Debug, Clone)]
pub struct Named<V>(Vec<(Arc<str>, V)>);

impl<V> Default for Named<V> {
    fn default() -> Self {
        Named(Vec::new())
    }
}

impl<V> Named<V> {
    pub fn get(&self, name: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| &**k == name).map(|(_, v)| v)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().map(|(k, _)| k)
    }

    /// The value of `name`, made by `new` the first time.
    pub fn entry(&mut self, name: &Arc<str>, new: impl FnOnce() -> V) -> &mut V {
        let at = match self.0.iter().position(|(k, _)| Arc::ptr_eq(k, name)) {
            Some(i) => i,
            None => match self.0.iter().position(|(k, _)| **k == **name) {
                Some(i) => i,
                None => {
                    self.0.push((name.clone(), new()));
                    self.0.len() - 1
                }
            },
        };
        &mut self.0[at].1
    }
}

impl<V> std::ops::Index<&str> for Named<V> {
    type Output = V;
    fn index(&self, name: &str) -> &V {
        self.get(name).expect("a name from this map")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_name_in_another_arc_is_the_same_entry() {
        let mut m: Named<u32> = Named::default();
        let a: Arc<str> = "eastus".into();
        *m.entry(&a, || 0) += 1;
        *m.entry(&Arc::from("eastus"), || 0) += 1;
        *m.entry(&Arc::from("westus"), || 10) += 1;
        assert_eq!((m["eastus"], m["westus"]), (2, 11));
        assert_eq!(m.keys().count(), 2);
        assert!(m.get("nowhere").is_none());
    }
}
