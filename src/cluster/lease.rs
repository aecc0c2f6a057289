//! Leases of requests in flight, for deployments with `max_in_flight`.
//!
//! A shared pick of such a deployment takes a lease in the same call
//! call: a member `<instance>:<n>` of the sorted set `T:l:<deployment>`,
//! scored by its expiry on the server's clock; picks count the set's live
//! members against the limit, and one that takes a lease removes the
//! expired ones.
//! The request's end releases it, off the path like a settle (a [`Lease`]
//! dropped, wherever the local pool's place in flight ends too). While
//! the request runs, this instance renews every lease it holds every third
//! of their TTL (a stream may run for an hour); an instance that dies
//! stops renewing, so its leases stop counting within the TTL (30 s
//! unless `lease_ttl_s` says less).
//!
//! Chosen over a count per instance with a heartbeat: a lease is one
//! request, so a release that was lost, or a pick whose answer never came
//! back, costs one place for one TTL and no more; a count would stay wrong
//! as long as its instance lives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::shared::{ModelKeys, lease_name};
use super::{Cluster, Op, REDIS_TIMEOUT, What};

/// The leases this instance's requests hold, by number: where each is.
#[derive(Default)]
pub(super) struct Held {
    next: AtomicU64,
    live: Mutex<HashMap<u64, (ModelKeys, Arc<str>)>>,
}

/// A model's leases held, by deployment: their names.
type ByDeployment = Vec<(Arc<str>, Vec<String>)>;

/// A lease the cluster gave one of this instance's requests: renewed
/// while it lives, released when it is dropped.
pub struct Lease {
    cluster: Arc<Cluster>,
    number: u64,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({})", self.number)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.cluster.release(self.number);
    }
}

impl Cluster {
    /// The number of the lease a pick takes should its deployment limit
    /// requests in flight.
    pub fn lease_number(&self) -> u64 {
        self.leases.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The lease numbered `number` that a shared pick took on `dep`, held
    /// (and renewed) until the returned [`Lease`] is dropped.
    pub fn hold(&self, keys: ModelKeys, dep: Arc<str>, number: u64) -> Option<Lease> {
        let cluster = self.this.upgrade()?;
        self.live().insert(number, (keys, dep));
        Some(Lease { cluster, number })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (ModelKeys, Arc<str>)>> {
        self.leases.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lease is no longer renewed, and its release goes out with the
    /// next batch of settles.
    fn release(&self, number: u64) {
        let Some((keys, dep)) = self.live().remove(&number) else {
            return;
        };
        self.queue(Op {
            keys,
            dep,
            what: What::Release {
                lease: lease_name(&self.id, number),
            },
        });
    }

    /// Renews this instance's leases every third of their TTL, until the
    /// cluster is dropped: one call per model that has any.
    pub async fn renew_leases(self: Arc<Self>) {
        let every = (self.lease_ttl / 3).max(std::time::Duration::from_millis(100));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for (keys, deps) in self.by_model() {
                let leases: Vec<(&str, Vec<String>)> =
                    deps.iter().map(|(d, l)| (&**d, l.clone())).collect();
                let mut con = self.connection();
                let call = self
                    .scripts
                    .renew(&mut con, &keys, None, self.lease_ttl, &leases);
                match tokio::time::timeout(REDIS_TIMEOUT * 5, call).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!("cluster: leases not renewed: {e}"),
                    Err(_) => tracing::debug!("cluster: renewing leases timed out"),
                }
            }
        }
    }

    /// The leases held, by model and deployment, by name.
    fn by_model(&self) -> Vec<(ModelKeys, ByDeployment)> {
        let mut out: Vec<(ModelKeys, ByDeployment)> = Vec::new();
        for (number, (keys, dep)) in self.live().iter() {
            let deps = match out.iter_mut().find(|(k, _)| k == keys) {
                Some((_, deps)) => deps,
                None => {
                    out.push((keys.clone(), Vec::new()));
                    &mut out.last_mut().expect("just pushed").1
                }
            };
            let name = lease_name(&self.id, *number);
            match deps.iter_mut().find(|(d, _)| d == dep) {
                Some((_, names)) => names.push(name),
                None => deps.push((dep.clone(), vec![name])),
            }
        }
        out
    }
}
