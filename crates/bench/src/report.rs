//! Turning samples into figures: throughput, latency percentiles, status
//! counts and Redis commands per request, and the markdown table.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::drive::Sample;
use crate::target::{CommandStats, Counters, CpuTimes};

pub struct Measured {
    pub name: &'static str,
    pub units: u64,
    pub http_requests: u64,
    pub elapsed: Duration,
    /// Milliseconds.
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub statuses: BTreeMap<u16, u64>,
    pub commands: CommandStats,
    pub cpu: CpuTimes,
    /// Connections Redis accepted.
    pub connections: u64,
    /// Each Redis node's CPU (one entry for a single Redis).
    pub node_cpu: Vec<Duration>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

impl Measured {
    pub fn new(
        name: &'static str,
        samples: Vec<Sample>,
        elapsed: Duration,
        counters: Counters,
    ) -> Self {
        let Counters {
            commands,
            cpu,
            connections,
            node_cpu,
        } = counters;
        let mut micros: Vec<u64> = samples.iter().map(|s| s.micros).collect();
        micros.sort_unstable();
        let mut statuses = BTreeMap::new();
        for s in &samples {
            *statuses.entry(s.status).or_default() += 1;
        }
        Measured {
            name,
            units: samples.len() as u64,
            http_requests: samples.iter().map(|s| u64::from(s.http_requests)).sum(),
            elapsed,
            p50: percentile(&micros, 50.0),
            p90: percentile(&micros, 90.0),
            p99: percentile(&micros, 99.0),
            max: percentile(&micros, 100.0),
            statuses,
            commands,
            cpu,
            connections,
            node_cpu,
        }
    }

    /// Each node's share of Redis's CPU, busiest first, in percent.
    pub fn node_shares(&self) -> Vec<f64> {
        let total: f64 = self.node_cpu.iter().map(Duration::as_secs_f64).sum();
        let mut shares: Vec<f64> = self
            .node_cpu
            .iter()
            .map(|d| 100.0 * d.as_secs_f64() / total.max(f64::MIN_POSITIVE))
            .collect();
        shares.sort_by(|a, b| b.total_cmp(a));
        shares
    }

    /// Redis connections opened per HTTP request.
    pub fn connections_per_request(&self) -> f64 {
        self.connections as f64 / self.http_requests.max(1) as f64
    }

    /// Units of work per second (requests, or flows for login).
    pub fn rate(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Redis commands per HTTP request, counting those run inside scripts.
    pub fn commands_per_request(&self) -> f64 {
        self.commands.total() as f64 / self.http_requests.max(1) as f64
    }

    /// Redis round trips per HTTP request (see `CommandStats::round_trips`).
    pub fn round_trips_per_request(&self) -> f64 {
        self.commands.round_trips() as f64 / self.http_requests.max(1) as f64
    }

    /// CPU microseconds per HTTP request of `time` (host or Redis).
    fn cpu_per_request(&self, time: Option<Duration>) -> Option<f64> {
        Some(time?.as_secs_f64() * 1e6 / self.http_requests.max(1) as f64)
    }

    /// Microseconds per HTTP request Redis spent inside the commands sent.
    pub fn command_usec_per_request(&self) -> f64 {
        self.commands.command_usec() as f64 / self.http_requests.max(1) as f64
    }

    fn cpu_text(&self, time: Option<Duration>) -> String {
        self.cpu_per_request(time)
            .map_or("-".to_string(), |us| format!("{us:.0}"))
    }

    fn statuses_text(&self) -> String {
        self.statuses
            .iter()
            .map(|(s, n)| {
                format!(
                    "{}: {n}",
                    if *s == 0 {
                        "error".to_string()
                    } else {
                        s.to_string()
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn commands_text(&self) -> String {
        let per = self.http_requests.max(1) as f64;
        self.commands
            .calls
            .iter()
            .map(|(c, n)| format!("{c} {:.2}", *n as f64 / per))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn one_line(&self) -> String {
        format!(
            "{:>22}: {:>8.0}/s  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  {:.2} round trips/request  {:.2} connections/request  CPU us/request host {} redis {} (in commands {:.0})  [{}]",
            self.name,
            self.rate(),
            self.p50,
            self.p90,
            self.p99,
            self.max,
            self.round_trips_per_request(),
            self.connections_per_request(),
            self.cpu_text(self.cpu.host),
            self.cpu_text(self.cpu.redis),
            self.command_usec_per_request(),
            self.statuses_text()
        )
    }
}

/// The results table, relative to the first row (the baseline).
pub fn markdown(results: &[Measured], concurrency: usize, users: usize) -> String {
    let baseline = &results[0];
    let mut out = format!(
        "Concurrency {concurrency}, {users} signed-in users.\n\n\
         | scenario | per second | vs baseline | p50 ms | p90 ms | p99 ms | p99 vs baseline | max ms | commands sent / request | commands / request | connections / request | host CPU µs / request | Redis CPU µs / request | of which in commands | statuses |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n"
    );
    for m in results {
        out.push_str(&format!(
            "| {} | {:.0} | {:.0}% | {:.2} | {:.2} | {:.2} | {:.1}x | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {:.0} | {} |\n",
            m.name,
            m.rate(),
            100.0 * m.rate() / baseline.rate().max(1e-9),
            m.p50,
            m.p90,
            m.p99,
            m.p99 / baseline.p99.max(1e-9),
            m.max,
            m.round_trips_per_request(),
            m.commands_per_request(),
            m.connections_per_request(),
            m.cpu_text(m.cpu.host),
            m.cpu_text(m.cpu.redis),
            m.command_usec_per_request(),
            m.statuses_text(),
        ));
    }
    out.push_str("\nRedis commands per request by command, including those inside scripts:\n\n");
    for m in results {
        out.push_str(&format!("- {}: {}\n", m.name, m.commands_text()));
    }
    out
}

/// Round trips to Redis per request, measured by time: with Redis `delay`
/// away each way and one request at a time, the median request took this
/// many round trip times (a connection's set-up included). A unit of two
/// requests (login, buy then pay) counts both.
pub fn round_trips_by_latency(results: &[Measured], delay: Duration) -> String {
    let rtt_ms = 2.0 * delay.as_secs_f64() * 1e3;
    let mut out = format!(
        "\nRound trips to Redis by latency (p50 over a {rtt_ms:.0} ms round trip, \
         local work included):\n\n"
    );
    for m in results {
        let per_request = m.units as f64 / m.http_requests.max(1) as f64;
        out.push_str(&format!(
            "- {}: {:.1} per unit, {:.1} per request\n",
            m.name,
            m.p50 / rtt_ms,
            m.p50 / rtt_ms * per_request
        ));
    }
    out
}

/// What the probe's two scenarios say about a second round trip: its cost
/// per request and the ceiling it puts on any two-round-trip endpoint.
pub fn second_round_trip(one: &Measured, two: &Measured) -> String {
    let (one_rate, two_rate) = (one.rate().max(1e-9), two.rate().max(1e-9));
    format!(
        "\nThe probe with two `PING`s ran at {:.0}% of the probe with one: on this \
         run, the ceiling relative to a one-round-trip endpoint for any endpoint \
         that makes two round trips. The second round trip made each request's \
         share of the run (1 / throughput) {:.0} µs longer.\n",
        100.0 * two_rate / one_rate,
        1e6 * (1.0 / two_rate - 1.0 / one_rate),
    )
}

/// How Redis's work spread over a cluster's nodes, per scenario: each
/// node's share of Redis's CPU, busiest first.
pub fn node_shares(results: &[Measured]) -> String {
    let mut out = String::from(
        "\nRedis CPU by node, busiest first:\n\n| scenario | busiest node | every node |\n| --- | ---: | --- |\n",
    );
    for m in results {
        let shares = m.node_shares();
        let every: Vec<String> = shares.iter().map(|s| format!("{s:.0}%")).collect();
        out.push_str(&format!(
            "| {} | {:.0}% | {} |\n",
            m.name,
            shares.first().copied().unwrap_or(0.0),
            every.join(" / ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
