//! How the cluster's operations run on Redis: one library of Redis
//! functions (Redis ≥ 7), called with FCALL; on an older Redis, one Lua
//! script each, called with EVALSHA.
//!
//! The library is `lua/lib.lua` (the rules' helpers, defined once when
//! Redis loads the library) and one function per operation, each the body
//! of its file under `lua/` (see [`Operation`]). A script had the library
//! at its top and defined it again on every call (5–7 µs of a warm pick,
//! measured: README, Performance).
//!
//! Its name and its functions' carry a version, the first 8 hex digits of
//! the SHA-1 of the library's text (`switchboard_<v>`, `sb_pick_<v>`, …):
//! instances of two versions of switchboard sharing one Redis each call
//! their own code, and a library already there under our name is ours.
//! None is flagged `no-writes`: even `state` moves the windows forward and
//! writes them.
//!
//! It is loaded when the instance first reaches Redis (its heartbeat),
//! when a lane connects, and when Redis comes back ([`Scripts::load`]); a call that finds it gone (Redis restarted
//! empty, `FUNCTION FLUSH`) loads it and is sent again, once, so that no
//! request fails for that. Whether the server has functions at all is
//! decided by that load, or by the first call that Redis answers
//! "unknown command": from then on the calls are scripts, until a load
//! (Redis back after being away) finds functions again.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::aio::ConnectionLike;
use redis::{ErrorKind, FromRedisValue, RedisError, RedisResult, Script, ServerErrorKind};
use redis::{ToRedisArgs, cmd};

/// One operation of the cluster, a function of the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    Pick,
    Apply,
    State,
    Toggle,
    Push,
    Renew,
    /// Stands alone: not `lib.lua`'s layout (see [`super::responses`]).
    Remember,
}

impl Operation {
    const ALL: [Operation; 7] = [
        Operation::Pick,
        Operation::Apply,
        Operation::State,
        Operation::Toggle,
        Operation::Push,
        Operation::Renew,
        Operation::Remember,
    ];

    fn name(self) -> &'static str {
        match self {
            Operation::Pick => "pick",
            Operation::Apply => "apply",
            Operation::State => "state",
            Operation::Toggle => "toggle",
            Operation::Push => "push",
            Operation::Renew => "renew",
            Operation::Remember => "remember",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Operation::Pick => include_str!("lua/pick.lua"),
            Operation::Apply => include_str!("lua/apply.lua"),
            Operation::State => include_str!("lua/state.lua"),
            Operation::Toggle => include_str!("lua/toggle.lua"),
            Operation::Push => include_str!("lua/push.lua"),
            Operation::Renew => include_str!("lua/renew.lua"),
            Operation::Remember => include_str!("lua/remember.lua"),
        }
    }

    /// Whether its body starts from `lib.lua`'s `begin`.
    fn with_lib(self) -> bool {
        self != Operation::Remember
    }

    fn index(self) -> usize {
        Operation::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

const LIB: &str = include_str!("lua/lib.lua");
/// Where the library's text has its version.
const VERSION: &str = "@VERSION@";

/// The library's text, its version, and the scripts for an older Redis.
pub struct Library {
    /// 8 hex digits of the SHA-1 of the text (with a placeholder for them).
    pub version: String,
    /// `switchboard_<version>`.
    pub name: String,
    text: String,
    /// Per operation (in [`Operation::ALL`]'s order), its function's name.
    functions: Vec<String>,
    /// Per operation, the same Lua as one script.
    scripts: Vec<Script>,
}

impl Library {
    fn new() -> Library {
        let mut text = format!("#!lua name=switchboard_{VERSION}\n{LIB}\n");
        for op in Operation::ALL {
            let begin = if op.with_lib() {
                "begin(KEYS, ARGV)\n"
            } else {
                ""
            };
            text.push_str(&format!(
                "redis.register_function{{function_name='sb_{}_{VERSION}', callback=function(KEYS, ARGV)\n{begin}{}\nend}}\n",
                op.name(),
                op.body()
            ));
        }
        let version = Script::new(&text).get_hash()[..8].to_string();
        let scripts = Operation::ALL
            .iter()
            .map(|op| {
                Script::new(&if op.with_lib() {
                    // lib.lua's KEYS and ARGV are its own: a script's are globals.
                    format!(
                        "local EVAL_KEYS, EVAL_ARGV = KEYS, ARGV\n{LIB}\nbegin(EVAL_KEYS, EVAL_ARGV)\n{}",
                        op.body()
                    )
                } else {
                    op.body().to_string()
                })
            })
            .collect();
        Library {
            name: format!("switchboard_{version}"),
            functions: Operation::ALL
                .iter()
                .map(|op| format!("sb_{}_{version}", op.name()))
                .collect(),
            text: text.replace(VERSION, &version),
            version,
            scripts,
        }
    }

    /// The text `FUNCTION LOAD` takes.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The library of this build.
pub static LIBRARY: LazyLock<Library> = LazyLock::new(Library::new);

/// The cluster's operations on one Redis (all of an instance's
/// connections go to the same server): whether they are calls of the
/// library's functions or, on a Redis without functions, scripts.
#[derive(Debug, Default)]
pub struct Scripts {
    evalsha: AtomicBool,
}

/// What `FUNCTION LOAD` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// The library is there (loaded now, or already).
    Functions,
    /// No functions on this server (Redis < 7): scripts from now on.
    Scripts,
}

impl Scripts {
    /// Calls with EVALSHA only, as on a Redis without functions: for the
    /// tests of that path on a Redis that has them.
    pub fn scripts_only() -> Scripts {
        Scripts {
            evalsha: AtomicBool::new(true),
        }
    }

    /// Whether calls go as scripts (EVALSHA).
    pub fn calls_scripts(&self) -> bool {
        self.evalsha.load(Ordering::Relaxed)
    }

    fn use_scripts(&self) {
        if !self.evalsha.swap(true, Ordering::Relaxed) {
            tracing::info!("cluster: Redis has no functions (Redis < 7): calling scripts instead");
        }
    }

    /// Loads the library (the scripts, on a Redis without functions), and
    /// decides which the calls use.
    pub async fn load<C: ConnectionLike + Send>(&self, con: &mut C) -> RedisResult<Loaded> {
        let loaded: RedisResult<String> = cmd("FUNCTION")
            .arg("LOAD")
            .arg(LIBRARY.text())
            .query_async(con)
            .await;
        match loaded {
            // Already there under our name: our version, the same code.
            Ok(_) => {}
            Err(e) if already_there(&e) => {}
            Err(e) if unknown_command(&e) => {
                self.use_scripts();
                for script in &LIBRARY.scripts {
                    script.load_async(con).await?;
                }
                return Ok(Loaded::Scripts);
            }
            Err(e) => return Err(e),
        }
        self.evalsha.store(false, Ordering::Relaxed);
        Ok(Loaded::Functions)
    }

    pub(super) fn call(&self, op: Operation) -> Invocation<'_> {
        Invocation {
            scripts: self,
            op,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// Whether Redis answered an ERR whose text starts with `start` and
/// holds `then` (case aside).
fn says(e: &RedisError, start: &str, then: &str) -> bool {
    let text = e.detail().map(str::to_ascii_lowercase).unwrap_or_default();
    e.kind() == ErrorKind::Server(ServerErrorKind::ResponseError)
        && text.starts_with(start)
        && text.contains(then)
}

/// The server has no such command: FCALL or FUNCTION on Redis < 7
/// ("unknown command `FCALL`, …" on 6, quoted '…' on 7).
fn unknown_command(e: &RedisError) -> bool {
    says(e, "unknown command", "")
}

/// The library is not there (Redis restarted empty, `FUNCTION FLUSH`).
fn no_function(e: &RedisError) -> bool {
    says(e, "function not found", "")
}

/// A library of that name is there already.
fn already_there(e: &RedisError) -> bool {
    says(e, "library '", "already exists")
}

/// One call's keys and arguments, as an operation reads them (`KEYS`, `ARGV`).
pub(super) struct Invocation<'a> {
    scripts: &'a Scripts,
    op: Operation,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Invocation<'_> {
    pub fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    fn fcall(&self) -> redis::Cmd {
        let mut c = cmd("FCALL");
        c.arg(&LIBRARY.functions[self.op.index()])
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        c
    }

    /// The call: FCALL, with the library loaded and the call sent again
    /// when Redis lost it; EVALSHA (loading the script when Redis lost it)
    /// on a Redis without functions.
    pub async fn invoke_async<C, T>(&self, con: &mut C) -> RedisResult<T>
    where
        C: ConnectionLike + Send,
        T: FromRedisValue,
    {
        if !self.scripts.calls_scripts() {
            match self.fcall().query_async(con).await {
                Err(e) if no_function(&e) => {
                    if self.scripts.load(con).await? == Loaded::Functions {
                        return self.fcall().query_async(con).await;
                    }
                }
                Err(e) if unknown_command(&e) => self.scripts.use_scripts(),
                answer => return answer,
            }
        }
        let script = &LIBRARY.scripts[self.op.index()];
        let mut inv = script.prepare_invoke();
        for k in &self.keys {
            inv.key(&k[..]);
        }
        for a in &self.args {
            inv.arg(&a[..]);
        }
        inv.invoke_async(con).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(line: &str) -> RedisError {
        let v = redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap();
        v.extract_error().unwrap_err()
    }

    #[test]
    fn the_version_names_the_library_and_every_function() {
        let lib = &*LIBRARY;
        assert_eq!(lib.version.len(), 8);
        assert!(lib.version.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(lib.name, format!("switchboard_{}", lib.version));
        assert!(
            lib.text()
                .starts_with(&format!("#!lua name={}\n", lib.name))
        );
        assert!(!lib.text().contains(VERSION));
        for op in Operation::ALL {
            let f = format!("sb_{}_{}", op.name(), lib.version);
            assert_eq!(lib.functions[op.index()], f);
            assert!(lib.text().contains(&format!("function_name='{f}'")));
        }
    }

    #[test]
    fn redis_errors_say_which_way_to_go() {
        // Redis 6 quotes with backticks, 7 with single quotes.
        for old in [
            "ERR unknown command `FCALL`, with args beginning with: `sb_pick_0`, `1`, ",
            "ERR unknown command 'FUNCTION', with args beginning with: 'LOAD' ",
        ] {
            assert!(unknown_command(&server_error(old)), "{old}");
            assert!(!no_function(&server_error(old)), "{old}");
        }
        let gone = server_error("ERR Function not found");
        assert!(no_function(&gone) && !unknown_command(&gone));
        // A script's own error is neither.
        let lua = server_error(
            "ERR user_function:12: Unknown Redis command called from script script: ...",
        );
        assert!(!no_function(&lua) && !unknown_command(&lua));
        let there = server_error("ERR Library 'switchboard_0123abcd' already exists");
        assert!(already_there(&there) && !no_function(&there) && !unknown_command(&there));
        assert!(!already_there(&gone));
    }
}
