//! A slow link to Redis: a TCP proxy that holds every chunk it forwards,
//! in each direction, for a fixed delay, as a far-away Redis would. With
//! the app's requests sent one at a time, a request's latency divided by
//! the round trip time (twice the delay) is the number of round trips it
//! made to Redis, connection set-up included (netem would do the same, and
//! needs privileges this tool does not ask for).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Listens on a free loopback port and forwards each connection to
/// `upstream` (`host:port`) with `delay` each way. Returns the port; the
/// proxy runs as long as the runtime does.
pub async fn start(upstream: String, delay: Duration) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(forward(client_read, server_write, delay));
                tokio::spawn(forward(server_read, client_write, delay));
            });
        }
    });
    Ok(port)
}

/// Copies `from` to `to`, each chunk `delay` after it was read, in order.
/// A reader and a writer of their own, so that chunks read in a burst
/// leave in a burst: the link delays, it does not slow.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if sender
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(sender);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_round_trip_takes_twice_the_delay() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut conn, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 16];
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                conn.write_all(&buf[..n]).await.unwrap();
            }
        });
        let port = start(upstream, Duration::from_millis(50)).await.unwrap();
        let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        for _ in 0..3 {
            let sent = Instant::now();
            conn.write_all(b"ping").await.unwrap();
            let mut back = [0u8; 4];
            conn.read_exact(&mut back).await.unwrap();
            let took = sent.elapsed();
            assert_eq!(&back, b"ping");
            // Delayed each way, once each way: not less, nor three times.
            assert!(
                took >= Duration::from_millis(100) && took < Duration::from_millis(300),
                "{took:?}"
            );
        }
    }
}
