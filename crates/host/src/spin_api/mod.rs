//! Host side of the Spin platform interfaces, generated from `wit/` and
//! implemented on the store state: for WASI 0.2 components (spin-sdk 5.x)
//! `fermyon:spin/redis@2.0.0`, `fermyon:spin/variables@2.0.0` and
//! `fermyon:spin/key-value@2.0.0`, for
//! WASI 0.3 ones (spin-sdk 7) `spin:redis/redis@3.0.0` and
//! `spin:variables/variables@3.0.0`, and for both
//! `spin:postgres/postgres@4.2.0` (which also serves spin-sdk 5.2's 4.0.0
//! imports); and the guest side of the Redis trigger's exports
//! (`fermyon:spin/inbound-redis`, `spin:redis/inbound-redis@3.0.0`), which
//! the host calls.
//!
//! The 0.3 interfaces' functions are `async func`s: their host side runs
//! outside the store (`Accessor`), so that the requests an instance runs
//! at once wait for Redis or PostgreSQL side by side.

mod key_value;
mod pg_pool;
mod postgres;
mod redis;
mod redis_v3;
mod variables;

pub use self::key_value::{KeyValueStore, KeyValueStores};
pub use self::pg_pool::PgPools;
pub use self::postgres::{PgConnection, PgConnectionBuilder};
pub use self::redis::RedisConnection;
pub use self::redis_v3::RedisConnectionV3;

wasmtime::component::bindgen!({
    path: "wit",
    world: "flashspin:host/spin-imports",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/redis.connection": RedisConnection,
        "fermyon:spin/key-value.store": KeyValueStore,
        "spin:redis/redis.connection": RedisConnectionV3,
        "spin:postgres/postgres.connection": PgConnection,
        "spin:postgres/postgres.connection-builder": PgConnectionBuilder,
    },
});

use crate::state::RequestState;

/// How the generated bindings reach the store's [`RequestState`]; the
/// `async func`s of the 0.3 interfaces are implemented on it, with the
/// store at hand through an `Accessor`.
pub struct SpinHost;

impl wasmtime::component::HasData for SpinHost {
    type Data<'a> = &'a mut RequestState;
}

/// Makes the Spin interfaces available to components linked by `linker`.
pub fn add_to_linker(
    linker: &mut wasmtime::component::Linker<RequestState>,
) -> wasmtime::Result<()> {
    SpinImports::add_to_linker::<RequestState, SpinHost>(linker, |state| state)
}

/// The export a Redis-triggered component provides.
pub mod inbound_redis {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "flashspin:host/redis-handler",
        exports: { default: async },
    });

    /// The same, as spin-sdk 7 makes it (`spin:redis/inbound-redis@3.0.0`).
    pub mod p3 {
        wasmtime::component::bindgen!({
            path: "wit",
            world: "flashspin:host/redis-handler-p3",
            exports: { default: async | store },
        });
    }
}
