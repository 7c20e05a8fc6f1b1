//! For the services' tests: start a binary as an operator does, find its admin port in
//! its log (`admin listening addr=...`), and ask it over plain HTTP/1.1. Blocking, std
//! only, so any test can use it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a binary may take to log its admin address and its ready line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running binary; killed when dropped.
pub struct Spawned {
    child: Child,
    /// Its admin port.
    pub admin: SocketAddr,
    /// The first word after its ready line (the gRPC address, for the servers).
    pub ready: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Spawned {
    /// Starts `bin` with `env` added to the environment and waits until it has logged
    /// its admin address and then `ready_line`.
    pub fn start(bin: &str, env: &[(&str, &str)], ready_line: &'static str) -> Spawned {
        let mut child = Command::new(bin)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    for marker in ["admin listening addr=", ready_line] {
                        if let Some(rest) = line.split(marker).nth(1) {
                            let word = rest.split_whitespace().next().unwrap_or("").to_string();
                            let _ = tx.send((marker, word));
                        }
                    }
                    log.lock().expect("log lock").push(line);
                }
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut admin, mut ready) = (None, None);
        while admin.is_none() || ready.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(("admin listening addr=", word)) => {
                    admin = Some(word.parse().expect("an admin address"))
                }
                Ok((_, word)) => ready = Some(word),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let text = log.lock().expect("log lock").join("\n");
                    panic!("{bin} did not log its admin address and {ready_line:?}:\n{text}");
                }
            }
        }
        Spawned {
            child,
            admin: admin.expect("admin address"),
            ready: ready.expect("ready line"),
            log,
        }
    }

    /// `GET path` on the admin port.
    pub fn get(&self, path: &str) -> Answer {
        get(self.admin, path)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Asks `path` until `accept` takes the answer, or panics after `within`.
    pub fn wait_for(
        &self,
        path: &str,
        within: Duration,
        accept: impl Fn(&Answer) -> bool,
    ) -> Answer {
        let deadline = Instant::now() + within;
        loop {
            let a = self.get(path);
            if accept(&a) {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "GET {path}: no acceptable answer within {within:?}; last: {} {}\nlog:\n{}",
                a.status,
                a.body,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// A header's value (the first of that name, any case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The sum of the samples whose line starts with `prefix` (a name, or a name and
    /// the start of its labels); None when there is none.
    pub fn sample(&self, prefix: &str) -> Option<f64> {
        let values: Vec<f64> = self
            .body
            .lines()
            .filter(|l| l.starts_with(prefix) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }
}

/// `GET path` over a fresh connection (`Connection: close`, the body read to the end).
pub fn get(addr: SocketAddr, path: &str) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request written");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response read");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {raw:?}"));
    Answer {
        status: head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0),
        head: head.to_string(),
        body: body.to_string(),
    }
}
