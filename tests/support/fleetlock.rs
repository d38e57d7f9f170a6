//! A FleetLock server on loopback for the tests: coreos/airlock's HTTP
//! protocol (`docs/protocol-specs.md`) with airlock's semantics — a
//! counting semaphore per group, locks owned by the client's id and
//! recursive, a holder keeping its slot until it says `steady-state`. It
//! keeps the history of every grant and release (with wall-clock times), so
//! a test can check the limit from the server's side. Only airlock's etcd
//! backing is left out: airlock is a Go program, not packaged by Debian.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Locked,
    Unlocked,
}

#[derive(Debug, Clone)]
pub struct Happened {
    pub at_ms: u64,
    pub id: String,
    pub change: Change,
    /// Holders right after the change.
    pub holders: usize,
}

#[derive(Default)]
struct Semaphore {
    holders: BTreeSet<String>,
    history: Vec<Happened>,
}

pub struct FleetLockServer {
    pub port: u16,
    slots: usize,
    state: Arc<Mutex<Semaphore>>,
    /// While set, every request is refused with a 503, as a server that
    /// lost its database answers.
    pub down: Arc<AtomicBool>,
}

impl FleetLockServer {
    /// Serve a semaphore of `slots` on a free loopback port (one thread per
    /// connection, for the life of the test process).
    pub fn start(slots: usize) -> FleetLockServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Semaphore::default()));
        let down = Arc::new(AtomicBool::new(false));
        {
            let state = state.clone();
            let down = down.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let state = state.clone();
                    let down = down.clone();
                    std::thread::spawn(move || {
                        let _ = handle(stream, slots, &state, &down);
                    });
                }
            });
        }
        FleetLockServer {
            port,
            slots,
            state,
            down,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn history(&self) -> Vec<Happened> {
        self.state.lock().unwrap().history.clone()
    }

    pub fn holders(&self) -> BTreeSet<String> {
        self.state.lock().unwrap().holders.clone()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn handle(
    stream: TcpStream,
    slots: usize,
    state: &Mutex<Semaphore>,
    down: &AtomicBool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    let mut protocol = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                length = value.parse().unwrap_or(0);
            }
            if name == "fleet-lock-protocol" && value == "true" {
                protocol = true;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or_default();
    let (status, answer) = if down.load(Ordering::SeqCst) {
        (
            503,
            error("database_unavailable", "the lock database is unreachable"),
        )
    } else if !request_line.starts_with("POST ") {
        (405, error("bad_method", "only POST"))
    } else if !protocol {
        (
            400,
            error("missing_header", "fleet-lock-protocol: true is required"),
        )
    } else {
        let params: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let id = params["client_params"]["id"].as_str().unwrap_or_default();
        if id.is_empty() {
            (400, error("bad_request", "client_params.id is missing"))
        } else {
            let mut s = state.lock().unwrap();
            match path {
                "/v1/pre-reboot" => {
                    if s.holders.contains(id) {
                        (200, String::new())
                    } else if s.holders.len() < slots {
                        s.holders.insert(id.to_string());
                        let holders = s.holders.len();
                        s.history.push(Happened {
                            at_ms: now_ms(),
                            id: id.to_string(),
                            change: Change::Locked,
                            holders,
                        });
                        (200, String::new())
                    } else {
                        (
                            409,
                            error(
                                "failed_lock",
                                &format!("all {slots} semaphore slots currently locked"),
                            ),
                        )
                    }
                }
                "/v1/steady-state" => {
                    if s.holders.remove(id) {
                        let holders = s.holders.len();
                        s.history.push(Happened {
                            at_ms: now_ms(),
                            id: id.to_string(),
                            change: Change::Unlocked,
                            holders,
                        });
                    }
                    (200, String::new())
                }
                _ => (404, error("not_found", path)),
            }
        }
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    )
}

fn error(kind: &str, value: &str) -> String {
    serde_json::json!({ "kind": kind, "value": value }).to_string()
}
