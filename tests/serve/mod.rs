//! `switchboard serve` as a child process, so a test can kill it and start
//! it again on the same port.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `switchboard serve` as a child process on a fixed port.
pub struct Serve {
    child: Child,
    pub port: u16,
    config: PathBuf,
    admin_key: String,
}

impl Serve {
    /// Serves `config` on 127.0.0.1:`port`, with `admin_key` in `$SB_ADMIN`
    /// (for configs that say `admin_key = "env:SB_ADMIN"`).
    pub fn start(config: &Path, port: u16, admin_key: &str) -> Serve {
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("SB_ADMIN", admin_key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let serve = Serve {
            child,
            port,
            config: config.to_path_buf(),
            admin_key: admin_key.to_string(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        serve
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.kill();
        *self = Serve::start(&self.config.clone(), self.port, &self.admin_key.clone());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
