//! `fermyon:spin/key-value@2.0.0`: the key-value store `default`, shared by
//! every instance of the app, as Spin provides it without runtime
//! configuration. A component opens only the labels its `key_value_stores`
//! names (else `access-denied`), and at most 256 stores at once, as on
//! Spin. Spin keeps `default` in a SQLite file under `.spin/`; this host
//! keeps it in memory, for as long as the host runs (docs/HOST.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::Resource;

use super::fermyon::spin2_0_0::key_value::{Error, Host, HostStore};
use crate::state::RequestState;

/// The label of the one store this host provides.
pub const DEFAULT_STORE: &str = "default";

/// How many stores an instance may hold open at once (Spin's table size).
const OPEN_STORES_PER_INSTANCE: usize = 256;

/// One store's entries, shared by the instances that opened it.
type Entries = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// The app's stores, by label: only `default`.
#[derive(Debug, Default)]
pub struct KeyValueStores {
    default: Entries,
}

/// The host state behind a guest's `store` resource.
pub struct KeyValueStore {
    entries: Entries,
}

type HostResult<T> = wasmtime::Result<Result<T, Error>>;

impl Host for RequestState {}

impl RequestState {
    fn store(&self, res: &Resource<KeyValueStore>) -> wasmtime::Result<Entries> {
        Ok(self.table.get(res)?.entries.clone())
    }
}

/// Runs `f` on the store's entries. A guest that panicked while holding
/// the lock cannot have left a half-written entry (each call is one map
/// operation), so a poisoned lock is taken over.
fn with_entries<T>(
    entries: &Mutex<HashMap<String, Vec<u8>>>,
    f: impl FnOnce(&mut HashMap<String, Vec<u8>>) -> T,
) -> T {
    let mut guard = entries.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut guard)
}

impl HostStore for RequestState {
    async fn open(&mut self, label: String) -> HostResult<Resource<KeyValueStore>> {
        if !self.component.key_value_stores.contains(&label) {
            return Ok(Err(Error::AccessDenied));
        }
        if label != DEFAULT_STORE {
            return Ok(Err(Error::NoSuchStore));
        }
        if self.key_value_stores_open >= OPEN_STORES_PER_INSTANCE {
            return Ok(Err(Error::StoreTableFull));
        }
        let entries = self.component.key_value.default.clone();
        self.key_value_stores_open += 1;
        Ok(Ok(self.table.push(KeyValueStore { entries })?))
    }

    async fn get(
        &mut self,
        res: Resource<KeyValueStore>,
        key: String,
    ) -> HostResult<Option<Vec<u8>>> {
        let entries = self.store(&res)?;
        Ok(Ok(with_entries(&entries, |e| e.get(&key).cloned())))
    }

    async fn set(
        &mut self,
        res: Resource<KeyValueStore>,
        key: String,
        value: Vec<u8>,
    ) -> HostResult<()> {
        let entries = self.store(&res)?;
        with_entries(&entries, |e| e.insert(key, value));
        Ok(Ok(()))
    }

    async fn delete(&mut self, res: Resource<KeyValueStore>, key: String) -> HostResult<()> {
        let entries = self.store(&res)?;
        with_entries(&entries, |e| e.remove(&key));
        Ok(Ok(()))
    }

    async fn exists(&mut self, res: Resource<KeyValueStore>, key: String) -> HostResult<bool> {
        let entries = self.store(&res)?;
        Ok(Ok(with_entries(&entries, |e| e.contains_key(&key))))
    }

    async fn get_keys(&mut self, res: Resource<KeyValueStore>) -> HostResult<Vec<String>> {
        let entries = self.store(&res)?;
        Ok(Ok(with_entries(&entries, |e| e.keys().cloned().collect())))
    }

    async fn drop(&mut self, res: Resource<KeyValueStore>) -> wasmtime::Result<()> {
        self.table.delete(res)?;
        self.key_value_stores_open = self.key_value_stores_open.saturating_sub(1);
        Ok(())
    }
}
