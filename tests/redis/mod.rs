//! A private `redis-server` for a test: a free loopback port, no
//! persistence, stopped when dropped. Never 6379.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    /// More arguments for redis-server.
    extra: Vec<String>,
}

impl Redis {
    /// Starts one; panics with what to install when there is no redis-server.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// As [`Redis::start`], with more arguments for redis-server.
    pub fn start_with(extra: &[&str]) -> Redis {
        // A port found free may be taken before redis-server binds it (by
        // another test's server, or a connection's local port): then the
        // server exits, and another port is tried.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut r = Redis {
                child: None,
                port,
                extra: extra.iter().map(|a| a.to_string()).collect(),
            };
            if r.spawn() {
                return r;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts redis-server on `self.port`; whether it is ours that answers
    /// there (false when it could not take the port).
    fn spawn(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed for this test (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if server_pid(self.port) == Some(child.id()) {
                self.child = Some(child);
                return true;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Killed and started again on the same port: empty, as after a crash
    /// of a server without persistence.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn(),
            "the port was taken while redis-server restarted"
        );
    }

    /// SIGSTOP / SIGCONT: a server that hangs with its sockets open.
    pub fn pause(&self, paused: bool) {
        let signal = if paused { "-STOP" } else { "-CONT" };
        let _ = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.pause(false);
        self.stop();
    }
}

/// The process id of the Redis answering on `port`, if one does.
fn server_pid(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n").ok()?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(rest) = text.split("process_id:").nth(1)
            && let Some((pid, _)) = rest.split_once('\r')
        {
            return pid.trim().parse().ok();
        }
    }
}
