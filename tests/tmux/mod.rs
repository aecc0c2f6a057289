//! A tmux server of a test's own, to run the real binary in a real
//! terminal: keys in with `send-keys`, the screen back with `capture-pane`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// A tmux server of our own (its socket in the test's folder) with one
/// session running a command.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    pub fn start(dir: &Path, command: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
        };
        // The shell keeps the pane open after the program exits, with its status.
        let script = format!("{command}; echo \"[exited $?]\"; sleep 600");
        let ok = tmux
            .cmd()
            .args(["new-session", "-d", "-s", "t", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(script)
            .status()
            .expect("tmux is needed for this test (apt-get install tmux)")
            .success();
        assert!(ok, "tmux new-session failed");
        tmux
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        // Our own server, no user config, UTF-8 whatever the CI's locale.
        c.arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null", "-u"]);
        c.env("LC_ALL", "C.UTF-8");
        c
    }

    pub fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Named keys: `Tab`, `Space`, `Enter`, `BTab`, `C-u`, or single characters.
    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            let ok = self
                .cmd()
                .args(["send-keys", "-t", "t", k])
                .status()
                .unwrap()
                .success();
            assert!(ok);
            // Keys apart, as a person types: an Esc followed at once by a
            // letter would read as Alt+letter.
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    pub fn type_text(&self, text: &str) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "t", "-l", text])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        std::thread::sleep(Duration::from_millis(60));
    }

    /// Polls the screen until `pred` holds; panics with the screen at the deadline.
    pub fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            if start.elapsed() > DEADLINE {
                panic!("timed out waiting for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_for(&self, text: &str) -> String {
        self.wait(text, |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// Whether the `[[models.deployments]]` table named `name` in a config the
/// dashboard wrote says `line`.
pub fn table_has(config: &str, name: &str, line: &str) -> bool {
    config
        .split("[[models")
        .find(|t| t.contains(&format!("name = \"{name}\"")))
        .is_some_and(|t| t.lines().any(|l| l.trim() == line))
}
