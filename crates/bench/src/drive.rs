//! Driving load: `concurrency` workers send a scenario's requests back to
//! back until the time or request budget is spent, recording each one's
//! status and latency, with a progress bar.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flashspin_testkit::api::Client;
use indicatif::{ProgressBar, ProgressStyle};

/// One HTTP request of a unit of work, built with the app's client just
/// before it is sent, from the previous step's response body (empty for
/// the first), so a step may use what an earlier step caused: a login code,
/// an order id.
pub type Step = Box<dyn FnOnce(&Client, &[u8]) -> reqwest::RequestBuilder + Send>;

/// The i-th unit of work of a scenario: usually one request, a few for a
/// flow such as login.
pub type Request = Arc<dyn Fn(u64) -> Vec<Step> + Send + Sync>;

#[derive(Clone, Copy, Debug)]
pub enum Limit {
    Time(Duration),
    Requests(u64),
}

/// One finished unit of work: the last status (or the first failing one)
/// and the time for all of its requests.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub status: u16,
    pub micros: u64,
    pub http_requests: u32,
}

/// Runs units `first`, `first + 1`, ... of `request` until `limit` is spent.
pub async fn run(
    api: &Client,
    name: &str,
    concurrency: usize,
    limit: Limit,
    request: Request,
    first: u64,
) -> (Vec<Sample>, Duration) {
    let next = Arc::new(AtomicU64::new(first));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let bar = match limit {
        Limit::Time(d) => ProgressBar::new(d.as_millis() as u64),
        Limit::Requests(n) => ProgressBar::new(n),
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>22} [{bar:40}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    let ticker = {
        let bar = bar.clone();
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                match limit {
                    Limit::Time(_) => bar.set_position(started.elapsed().as_millis() as u64),
                    Limit::Requests(_) => bar.set_position(n),
                }
                bar.set_message(format!("{n} done, {:.0}/s", n as f64 / secs.max(0.001)));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let api = api.clone();
            let next = next.clone();
            let done = done.clone();
            let request = request.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let over = match limit {
                        Limit::Time(d) => started.elapsed() >= d,
                        Limit::Requests(n) => i - first >= n,
                    };
                    if over {
                        break;
                    }
                    let t0 = Instant::now();
                    let mut status = 0;
                    let mut sent = 0;
                    let mut previous = Vec::new();
                    for step in request(i) {
                        sent += 1;
                        status = match step(&api, &previous).send().await {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                previous = response.bytes().await.unwrap_or_default().to_vec();
                                status
                            }
                            Err(_) => 0,
                        };
                        if !(200..300).contains(&status) {
                            break;
                        }
                    }
                    samples.push(Sample {
                        status,
                        micros: t0.elapsed().as_micros() as u64,
                        http_requests: sent,
                    });
                    done.fetch_add(1, Ordering::Relaxed);
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.await.expect("worker panicked"));
    }
    let elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    (samples, elapsed)
}
