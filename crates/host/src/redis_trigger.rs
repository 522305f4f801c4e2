//! The Redis trigger, as Spin 4.0.2 runs it: each `[[trigger.redis]]`
//! subscribes its component to a channel of a Redis (its own `address` or
//! `[application.trigger.redis] address`, templates resolved once at start).
//! One connection per address, plain `SUBSCRIBE`; its messages are handled
//! one at a time, each by every component of the channel at once, each in a
//! fresh instance given the raw payload. A component that fails or traps is
//! logged and the message is gone (pub/sub has no retry). A connection that
//! drops ends the trigger, and `up` with it, as Spin's `up` stops when one
//! of its triggers exits.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use futures::StreamExt;
use wasmtime::Store;

use crate::app::App;
use crate::manifest::Manifest;
use crate::spin_api::inbound_redis::exports::fermyon::spin::inbound_redis::Error as HandlerError;
use crate::state::RequestState;
use crate::variables::AppVariables;

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
    let tasks = subscriptions
        .into_iter()
        .map(|subscription| tokio::spawn(listen(app.clone(), subscription)));
    match futures::future::select_all(tasks).await.0 {
        Ok(Err(e)) => e,
        Ok(Ok(never)) => match never {},
        Err(panic) => anyhow::anyhow!("the Redis trigger failed: {panic}"),
    }
}

/// Subscribes to one address's channels and handles their messages, one at
/// a time, until the connection drops.
async fn listen(
    app: Arc<App>,
    subscription: Subscription,
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
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let channel = message.get_channel_name().to_string();
        let Some(components) = subscription.channels.get(&channel) else {
            eprintln!("message from unexpected channel {channel:?}");
            continue;
        };
        let payload = message.get_payload_bytes().to_vec();
        let runs = components
            .iter()
            .map(|id| handle(&app, id, payload.clone()));
        for (id, outcome) in components.iter().zip(futures::future::join_all(runs).await) {
            if let Err(e) = outcome {
                eprintln!("Component {id} handler failed: {e:#}");
            }
        }
    }
    bail!("disconnected from {server}")
}

/// Runs component `id` on one message, in a fresh instance.
async fn handle(app: &App, id: &str, payload: Vec<u8>) -> anyhow::Result<()> {
    let handler = app
        .redis_handlers
        .get(id)
        .with_context(|| format!("no Redis handler `{id}`"))?;
    let mut store = Store::new(&app.engine, RequestState::new(handler.context.clone()));
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    let result = async {
        let instance = handler.pre.instantiate_async(&mut store).await?;
        instance
            .fermyon_spin_inbound_redis()
            .call_handle_message(&mut store, &payload)
            .await
    }
    .await;
    store.data().finish_output();
    match result.map_err(crate::app::wasm_err)? {
        Ok(()) => Ok(()),
        Err(HandlerError::Success | HandlerError::Error) => {
            bail!("Redis handler returned an error")
        }
    }
}
