//! With `--export`: how far behind the order exporter ran. Once the load
//! stops, waits until every voucher's outbox is empty (the exporter caught
//! up without help), then reads each row's lag, `exported_at -
//! update_time`: from the change in Redis to its arrival in PostgreSQL, by
//! the clock of this one machine.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flashspin_core::ids::VoucherId;
use flashspin_core::keys;
use flashspin_testkit::PostgresServer;

use crate::target::Target;

pub struct ExportLag {
    rows: u64,
    /// Percentiles of the lag, ms: p50, p90, p99, max.
    lag_ms: [f64; 4],
    /// From the end of the load until every outbox was empty.
    caught_up: Duration,
    /// Events the operator's drain still found afterwards (0 when the
    /// exporter kept up on its own).
    drained: u64,
}

pub async fn measure(target: &Target, pg: &PostgresServer) -> anyhow::Result<ExportLag> {
    let stopped = Instant::now();
    let mut conn = redis::Client::open(target.redis_url())?.get_connection()?;
    let last: Option<u64> = redis::cmd("GET")
        .arg(keys::VOUCHER_SEQUENCE)
        .query(&mut conn)?;
    let outboxes: Vec<String> = (1..=last.unwrap_or(0))
        .filter_map(VoucherId::new)
        .map(keys::voucher_outbox)
        .collect();
    loop {
        let mut pipe = redis::pipe();
        for outbox in &outboxes {
            pipe.cmd("XLEN").arg(outbox);
        }
        let lengths: Vec<u64> = pipe.query(&mut conn)?;
        if lengths.iter().all(|&n| n == 0) {
            break;
        }
        if stopped.elapsed() > Duration::from_secs(120) {
            bail!("the exporter did not catch up within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let caught_up = stopped.elapsed();
    let drained = target.drain_orders().await?;
    let stats = pg.psql(
        "SELECT count(*), \
         percentile_cont(ARRAY[0.5, 0.9, 0.99, 1.0]) WITHIN GROUP (ORDER BY lag) \
         FROM (SELECT extract(epoch FROM exported_at - update_time) * 1000 AS lag \
         FROM voucher_order) AS rows",
    );
    let (rows, percentiles) = stats
        .trim()
        .split_once('|')
        .context("reading the lag from PostgreSQL")?;
    let lag: Vec<f64> = percentiles
        .trim_matches(['{', '}'])
        .split(',')
        .map(|v| v.parse().unwrap_or(f64::NAN))
        .collect();
    Ok(ExportLag {
        rows: rows.parse()?,
        lag_ms: [lag[0], lag[1], lag[2], lag[3]],
        caught_up,
        drained,
    })
}

impl ExportLag {
    pub fn one_line(&self) -> String {
        let [p50, p90, p99, max] = self.lag_ms;
        format!(
            "export: {} rows, lag p50 {p50:.0} ms, p90 {p90:.0} ms, p99 {p99:.0} ms, max {max:.0} ms; \
             caught up {} ms after the load, {} left for the drain",
            self.rows,
            self.caught_up.as_millis(),
            self.drained
        )
    }

    pub fn markdown(&self) -> String {
        let [p50, p90, p99, max] = self.lag_ms;
        format!(
            "\n### Order export\n\n\
             Every order change to PostgreSQL through the export app; lag is \
             `exported_at - update_time` of each row (its latest change).\n\n\
             | rows | lag p50 | p90 | p99 | max | caught up after the load | left for the drain |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n\
             | {} | {p50:.0} ms | {p90:.0} ms | {p99:.0} ms | {max:.0} ms | {} ms | {} |\n",
            self.rows,
            self.caught_up.as_millis(),
            self.drained
        )
    }
}
