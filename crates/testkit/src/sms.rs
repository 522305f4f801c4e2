//! A local stand-in for the SMS gateway: records every message posted to
//! it ([`Sms`]) and answers with a chosen status, or not at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A message the app posted to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Sms {
    pub phone: String,
    pub code: String,
    pub text: String,
}

#[derive(Clone, Copy, Debug)]
pub enum SinkMode {
    Answer(u16),
    /// Accepts the request and stays silent for this long.
    Stall(Duration),
}

pub struct SmsSink {
    pub port: u16,
    received: Arc<Mutex<Vec<Sms>>>,
    latest: Arc<Mutex<HashMap<String, String>>>,
    mode: Arc<Mutex<SinkMode>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmsSink {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Listens on loopback port `port` (0: any free port).
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let latest = Arc::new(Mutex::new(HashMap::new()));
        let mode = Arc::new(Mutex::new(SinkMode::Answer(200)));
        let task = {
            let received = received.clone();
            let latest = latest.clone();
            let mode = mode.clone();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let received = received.clone();
                    let latest = latest.clone();
                    let mode = *mode.lock().unwrap();
                    tokio::spawn(async move {
                        let Some(body) = read_request(&mut stream).await else {
                            return;
                        };
                        if let Ok(sms) = serde_json::from_slice::<Sms>(&body) {
                            latest
                                .lock()
                                .unwrap()
                                .insert(sms.phone.clone(), sms.code.clone());
                            received.lock().unwrap().push(sms);
                        }
                        let status = match mode {
                            SinkMode::Answer(status) => status,
                            SinkMode::Stall(d) => {
                                tokio::time::sleep(d).await;
                                200
                            }
                        };
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = stream.write_all(reply.as_bytes()).await;
                    });
                }
            })
        };
        SmsSink {
            port,
            received,
            latest,
            mode,
            task,
        }
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_mode(&self, mode: SinkMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<Sms> {
        self.received.lock().unwrap().clone()
    }

    /// The code of the last message sent to `phone`.
    pub fn last_code(&self, phone: &str) -> Option<String> {
        self.latest.lock().unwrap().get(phone).cloned()
    }
}

impl Drop for SmsSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request and returns its body.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[header_end..].to_vec())
}
