//! The Redis trigger, as Spin 4.0.2 runs it: each `[[trigger.redis]]`
//! subscribes its component to a channel of a Redis (its own `address` or
//! `[application.trigger.redis] address`, templates resolved once at start).
//! One connection per address, plain `SUBSCRIBE`; its messages are handled
//! one at a time, each by every component of the channel at once, each in a
//! fresh instance given the raw payload (a WASI 0.2 export,
//! `fermyon:spin/inbound-redis`, or a 0.3 one, spin-sdk 7's
//! `spin:redis/inbound-redis@3.0.0`, as Spin 4.1 runs it). A component that fails or traps is
//! logged and the message is gone (pub/sub has no retry). A connection that
//! drops ends the trigger, and `up` with it, as Spin's `up` stops when one
//! of its triggers exits.
//!
//! Unlike Spin, every wait is bounded (docs/HOST.md, Limits): a message's
//! handlers are stopped at [`MESSAGE_TIME_LIMIT`], and the messages that
//! arrive while one is handled wait in a queue of at most
//! [`MESSAGE_QUEUE_LIMIT`] messages and [`MESSAGE_QUEUE_BYTES`]; beyond
//! that a message is dropped (merged, when the same one is already
//! waiting), and the drops are logged.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use tokio::sync::Notify;
use wasmtime::Store;

use crate::app::{App, RedisExport};
use crate::manifest::Manifest;
use crate::spin_api::inbound_redis::exports::fermyon::spin::inbound_redis::Error as HandlerError;
use crate::spin_api::inbound_redis::p3::RedisHandlerP3Pre;
use crate::state::RequestState;
use crate::variables::AppVariables;

/// How long a message's handlers may run, from the start of its handling;
/// the environment variable `FLASHSPIN_MESSAGE_TIME_LIMIT_MS` changes it.
const MESSAGE_TIME_LIMIT: Duration = Duration::from_secs(30);
/// How many messages may wait, per connection, while one is handled; the
/// environment variable `FLASHSPIN_MESSAGE_QUEUE_LIMIT` changes it.
const MESSAGE_QUEUE_LIMIT: usize = 1000;
/// How many bytes of payload the waiting messages may hold together.
const MESSAGE_QUEUE_BYTES: usize = 64 << 20;
/// The least time between two log lines about dropped messages, unless
/// the queue has drained.
const DROP_REPORT_GAP: Duration = Duration::from_secs(1);

/// The bounds of a trigger's message handling.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub time: Duration,
    pub queue: usize,
}

impl Limits {
    /// The defaults, or what the environment says.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Self {
            time: var("FLASHSPIN_MESSAGE_TIME_LIMIT_MS")
                .map(Duration::from_millis)
                .unwrap_or(MESSAGE_TIME_LIMIT),
            queue: var("FLASHSPIN_MESSAGE_QUEUE_LIMIT")
                .map(|n| n as usize)
                .unwrap_or(MESSAGE_QUEUE_LIMIT),
        }
    }
}

/// The channels of one Redis address and the components each one runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub address: String,
    pub channels: BTreeMap<String, Vec<String>>,
}

/// The subscriptions of `manifest`'s Redis triggers, their templates
/// resolved with the application's variables.
pub fn subscriptions(
    manifest: &Manifest,
    variables: &AppVariables,
) -> anyhow::Result<Vec<Subscription>> {
    let default_address = match &manifest.redis_address {
        Some(address) => variables
            .expand(address)
            .context("failed to resolve redis trigger default address")?,
        None => String::new(),
    };
    let mut by_address: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for trigger in &manifest.redis_triggers {
        let id = &trigger.component;
        let address = match &trigger.address {
            Some(address) => variables.expand(address).with_context(|| {
                format!("failed to resolve redis trigger address {address:?} for component {id}")
            })?,
            None => default_address.clone(),
        };
        if address.is_empty() {
            bail!(
                "Redis trigger for component {id} has no address: set `[application.trigger.redis] address` or the trigger's `address`"
            );
        }
        let channel = variables.expand(&trigger.channel).with_context(|| {
            format!(
                "failed to resolve redis trigger channel {:?} for component {id}",
                trigger.channel
            )
        })?;
        by_address
            .entry(address)
            .or_default()
            .entry(channel)
            .or_default()
            .push(id.clone());
    }
    Ok(by_address
        .into_iter()
        .map(|(address, channels)| Subscription { address, channels })
        .collect())
}

/// Runs every subscription until one of them ends, and says why.
pub async fn run(app: Arc<App>, subscriptions: Vec<Subscription>) -> anyhow::Error {
    let limits = Limits::from_env();
    let tasks = subscriptions
        .into_iter()
        .map(|subscription| tokio::spawn(listen(app.clone(), subscription, limits)));
    match futures::future::select_all(tasks).await.0 {
        Ok(Err(e)) => e,
        Ok(Ok(never)) => match never {},
        Err(panic) => anyhow::anyhow!("the Redis trigger failed: {panic}"),
    }
}

/// Subscribes to one address's channels and handles their messages, one at
/// a time, until the connection drops. Messages are read from the
/// connection as they come, while one is being handled, into a bounded
/// queue: the client would otherwise buffer them without limit.
async fn listen(
    app: Arc<App>,
    subscription: Subscription,
    limits: Limits,
) -> anyhow::Result<std::convert::Infallible> {
    let client = redis::Client::open(subscription.address.as_str())
        .with_context(|| format!("invalid Redis trigger address {:?}", subscription.address))?;
    let server = client.get_connection_info().addr().to_string();
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .with_context(|| format!("Redis trigger failed to connect to {server}"))?;
    println!("Active Channels on {server}:");
    for (channel, components) in &subscription.channels {
        pubsub
            .subscribe(channel)
            .await
            .with_context(|| format!("Redis trigger failed to subscribe to {channel:?}"))?;
        println!("\t{server}/{channel}: [{}]", components.join(","));
    }
    let queue = Queue::new(&server, limits.queue);
    let read = async {
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let channel = message.get_channel_name().to_string();
            queue.push(channel, message.get_payload_bytes().to_vec());
        }
    };
    let handle_all = async {
        loop {
            let (channel, payload) = queue.pop().await;
            let Some(components) = subscription.channels.get(&channel) else {
                eprintln!("message from unexpected channel {channel:?}");
                continue;
            };
            let deadline = tokio::time::Instant::now() + limits.time;
            let runs = components
                .iter()
                .map(|id| handle(&app, id, payload.clone(), deadline));
            for (id, outcome) in components.iter().zip(futures::future::join_all(runs).await) {
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("Component {id} handler failed: {e:#}"),
                    Err(_elapsed) => eprintln!(
                        "Component {id} handler stopped: still running after {:?}",
                        limits.time
                    ),
                }
            }
        }
    };
    tokio::select! {
        () = read => bail!("disconnected from {server}"),
        never = handle_all => never,
    }
}

/// The messages waiting to be handled, and what was dropped since the last
/// report of it.
struct Queue<'a> {
    server: &'a str,
    limit: usize,
    state: Mutex<QueueState>,
    arrived: Notify,
}

#[derive(Default)]
struct QueueState {
    waiting: VecDeque<(String, Vec<u8>)>,
    bytes: usize,
    dropped: u64,
    merged: u64,
    reported: Option<Instant>,
}

impl<'a> Queue<'a> {
    fn new(server: &'a str, limit: usize) -> Self {
        Self {
            server,
            limit,
            state: Mutex::default(),
            arrived: Notify::new(),
        }
    }

    /// Adds a message to wait its turn, or drops it when the queue is full.
    /// Wake-ups that only name something to look at lose nothing by being
    /// merged with the same one already waiting.
    fn push(&self, channel: String, payload: Vec<u8>) {
        let mut state = self.state.lock().unwrap();
        if state.waiting.len() < self.limit && state.bytes + payload.len() <= MESSAGE_QUEUE_BYTES {
            state.bytes += payload.len();
            state.waiting.push_back((channel, payload));
            drop(state);
            self.arrived.notify_one();
            return;
        }
        state.dropped += 1;
        if state
            .waiting
            .iter()
            .any(|(c, p)| *c == channel && *p == payload)
        {
            state.merged += 1;
        }
    }

    /// The next message, once there is one; says what was dropped, at most
    /// once a [`DROP_REPORT_GAP`] unless the queue has drained.
    async fn pop(&self) -> (String, Vec<u8>) {
        loop {
            {
                let mut state = self.state.lock().unwrap();
                if let Some((channel, payload)) = state.waiting.pop_front() {
                    state.bytes -= payload.len();
                    let due = state
                        .reported
                        .is_none_or(|at| at.elapsed() >= DROP_REPORT_GAP);
                    if state.dropped > 0 && (due || state.waiting.is_empty()) {
                        eprintln!(
                            "Redis trigger on {}: queue full ({} messages waiting); dropped {} message(s), {} of them the same as one waiting",
                            self.server, self.limit, state.dropped, state.merged
                        );
                        state.dropped = 0;
                        state.merged = 0;
                        state.reported = Some(Instant::now());
                    }
                    return (channel, payload);
                }
            }
            self.arrived.notified().await;
        }
    }
}

/// Runs component `id` on one message, in a fresh instance, until it ends
/// or `deadline` passes (then the instance is dropped wherever it is).
async fn handle(
    app: &App,
    id: &str,
    payload: Vec<u8>,
    deadline: tokio::time::Instant,
) -> Result<anyhow::Result<()>, tokio::time::error::Elapsed> {
    let Some(handler) = app.redis_handlers.get(id) else {
        return Ok(Err(anyhow::anyhow!("no Redis handler `{id}`")));
    };
    let mut store = Store::new(&app.engine, RequestState::new(handler.context.clone()));
    // Running Wasm gives its thread back at every epoch tick, so that the
    // deadline can stop a guest that computes for ever.
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    let result = tokio::time::timeout_at(deadline, async {
        let pre = match &handler.pre {
            RedisExport::Wasi0_2(pre) => pre,
            RedisExport::Wasi0_3(pre) => return handle_p3(&mut store, pre, payload).await,
        };
        let instance = pre.instantiate_async(&mut store).await?;
        instance
            .fermyon_spin_inbound_redis()
            .call_handle_message(&mut store, &payload)
            .await
            .map(|handled| handled.map_err(|_: HandlerError| ()))
    })
    .await;
    store.data().finish_output();
    Ok(match result?.map_err(crate::app::wasm_err) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(())) => Err(anyhow::anyhow!("Redis handler returned an error")),
        Err(e) => Err(e),
    })
}

/// The same for a spin-sdk 7 component (`spin:redis/inbound-redis@3.0.0`),
/// whose export is async: one fresh instance per message, as Spin 4.1 runs
/// it (no reuse).
async fn handle_p3(
    store: &mut Store<RequestState>,
    pre: &RedisHandlerP3Pre<RequestState>,
    payload: Vec<u8>,
) -> wasmtime::Result<Result<(), ()>> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let handled = store
        .run_concurrent(async |accessor| {
            instance
                .spin_redis_inbound_redis()
                .call_handle_message(accessor, payload)
                .await
        })
        .await??;
    Ok(handled.map_err(drop))
}
