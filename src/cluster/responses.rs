//! Which deployment produced each stored Responses-API response, shared by
//! the instances of a cluster: a follow-up (`previous_response_id`) or a
//! `GET /v1/responses/{id}` may reach any of them, and must still go where
//! the response is.
//!
//! Each id is a key `{sb:<name>}:r:<id>` holding its producer, with the
//! gateway's TTL, and a member of the index `{sb:<name>}:responses` (scored
//! by when it was noted), which holds the bound: past it the oldest go.
//! Noting and forgetting leave the request's path: they go over the
//! thread's lane (see [`super::batch`]) at once, without waiting to ride
//! along with a pick, so that a follow-up sent to another instance right
//! after the answer finds them. Looking one up is one GET, on the path of
//! the requests that need it only.

use std::time::Duration;

use redis::aio::ConnectionLike;

use super::functions::{Operation, Scripts};
use super::{Cluster, Down, REDIS_TIMEOUT};

/// The keys of a cluster's remembered responses: its hash tag, so that
/// they live on one slot with the cluster's other keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseKeys {
    tag: String,
}

impl ResponseKeys {
    pub fn new(cluster: &str) -> ResponseKeys {
        ResponseKeys {
            tag: super::member::tag_of(cluster),
        }
    }

    pub fn index(&self) -> String {
        format!("{}:responses", self.tag)
    }

    fn prefix(&self) -> String {
        format!("{}:r:", self.tag)
    }

    pub fn of(&self, id: &str) -> String {
        format!("{}{id}", self.prefix())
    }
}

/// A change to what the cluster remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// `model`'s deployment `deployment` produced `id`: remembered for
    /// `ttl`, among the newest `bound`.
    Remember {
        id: Box<str>,
        model: Box<str>,
        deployment: Box<str>,
        ttl: Duration,
        bound: usize,
    },
    Forget {
        id: Box<str>,
    },
}

impl Note {
    fn id(&self) -> &str {
        match self {
            Note::Remember { id, .. } | Note::Forget { id } => id,
        }
    }
}

/// Writes `notes`, in order, in one call (`lua/remember.lua`). `now_ms`
/// None: the server's clock (tests pass theirs).
pub async fn write<C: ConnectionLike + Send>(
    con: &mut C,
    scripts: &Scripts,
    keys: &ResponseKeys,
    now_ms: Option<u64>,
    notes: &[Note],
) -> redis::RedisResult<()> {
    let mut inv = scripts.call(Operation::Remember);
    inv.key(keys.index())
        .arg(now_ms.map(|n| n.to_string()).unwrap_or_default())
        .arg(keys.prefix());
    for note in notes {
        inv.key(keys.of(note.id()));
        match note {
            Note::Remember {
                id,
                model,
                deployment,
                ttl,
                bound,
            } => {
                let producer = serde_json::to_string(&(model, deployment)).unwrap_or_default();
                inv.arg("+")
                    .arg(&**id)
                    .arg(producer)
                    .arg(ttl.as_millis().max(1) as u64)
                    .arg(*bound);
            }
            Note::Forget { id } => {
                inv.arg("-").arg(&**id);
            }
        }
    }
    let _: i64 = inv.invoke_async(con).await?;
    Ok(())
}

/// The model and deployment that produced `id`, if the cluster remembers it.
pub async fn producer<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &ResponseKeys,
    id: &str,
) -> redis::RedisResult<Option<(String, String)>> {
    let text: Option<String> = redis::cmd("GET").arg(keys.of(id)).query_async(con).await?;
    // Unreadable (written by a later version?): as if unknown.
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// Longer ids are no upstream's: not worth a key, nor a look-up.
const MAX_ID: usize = 256;

impl Cluster {
    pub fn response_keys(&self) -> ResponseKeys {
        ResponseKeys::new(&self.name)
    }

    /// Notes, off the request's path, that `model`'s `deployment` produced
    /// response `id`; kept for `ttl`, among the newest `bound`.
    pub fn remember_response(
        &self,
        id: &str,
        model: &str,
        deployment: &str,
        ttl: Duration,
        bound: usize,
    ) {
        if id.len() > MAX_ID {
            return;
        }
        self.note_response(Note::Remember {
            id: id.into(),
            model: model.into(),
            deployment: deployment.into(),
            ttl,
            bound,
        });
    }

    /// Notes it before the answer goes: a client may send its follow-up
    /// through another instance as soon as it has the answer, faster than
    /// a note sent off the path lands. One call, bounded by
    /// [`REDIS_TIMEOUT`]; when Redis is away the note goes off the path
    /// instead, as [`Cluster::remember_response`] does.
    pub async fn remember_response_now(
        &self,
        id: &str,
        model: &str,
        deployment: &str,
        ttl: Duration,
        bound: usize,
    ) {
        if id.len() > MAX_ID {
            return;
        }
        let note = Note::Remember {
            id: id.into(),
            model: model.into(),
            deployment: deployment.into(),
            ttl,
            bound,
        };
        let mut con = self.connection();
        let keys = self.response_keys();
        let written = tokio::time::timeout(
            REDIS_TIMEOUT,
            write(
                &mut con,
                &self.scripts,
                &keys,
                None,
                std::slice::from_ref(&note),
            ),
        )
        .await;
        if !matches!(written, Ok(Ok(()))) {
            self.note_response(note);
        }
    }

    /// Forgets response `id`, off the request's path.
    pub fn forget_response(&self, id: &str) {
        if id.len() <= MAX_ID {
            self.note_response(Note::Forget { id: id.into() });
        }
    }

    fn note_response(&self, note: Note) {
        if let Some(lane) = self.lane() {
            let _ = lane.notes.send(note);
        }
    }

    /// The model and deployment that produced `id`, as the cluster
    /// remembers it: one GET, bounded by [`REDIS_TIMEOUT`].
    pub async fn response_producer(&self, id: &str) -> Result<Option<(String, String)>, Down> {
        if id.len() > MAX_ID {
            return Ok(None);
        }
        let mut con = self.connection();
        let keys = self.response_keys();
        match tokio::time::timeout(REDIS_TIMEOUT, producer(&mut con, &keys, id)).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(Down::Redis(e.to_string())),
            Err(_) => Err(Down::Timeout(REDIS_TIMEOUT)),
        }
    }

    /// Notes gathered on a lane, written in one call (retried once
    /// on a connection found dead, as settles are); lost, and said so in
    /// the debug log, when Redis is away.
    pub(super) async fn write_notes(
        self: std::sync::Arc<Self>,
        notes: Vec<Note>,
        mut con: redis::aio::ConnectionManager,
    ) {
        let keys = self.response_keys();
        let call = async {
            match write(&mut con, &self.scripts, &keys, None, &notes).await {
                Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                    write(&mut con, &self.scripts, &keys, None, &notes).await
                }
                done => done,
            }
        };
        match tokio::time::timeout(REDIS_TIMEOUT * 10, call).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(
                "cluster: {} response ids not shared: {e}; their follow-ups go where they are only through the instance that served them",
                notes.len()
            ),
            Err(_) => tracing::debug!(
                "cluster: {} response ids not shared: Redis timed out",
                notes.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_clusters_hash_tag() {
        let k = ResponseKeys::new("pr{o}d");
        assert_eq!(k.index(), "{sb:pr%7Bo%7Dd}:responses");
        assert_eq!(k.of("resp_1"), "{sb:pr%7Bo%7Dd}:r:resp_1");
    }
}
