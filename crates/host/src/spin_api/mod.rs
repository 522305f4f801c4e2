//! Host side of the Spin platform interfaces (`fermyon:spin/redis@2.0.0`,
//! `fermyon:spin/variables@2.0.0` and `spin:postgres/postgres@4.0.0`), generated from `wit/` and implemented on
//! the per-request store state, and the guest side of the Redis trigger's
//! export (`fermyon:spin/inbound-redis`), which the host calls.

mod pg_pool;
mod postgres;
mod redis;
mod variables;

pub use self::pg_pool::PgPools;
pub use self::postgres::PgConnection;
pub use self::redis::RedisConnection;

wasmtime::component::bindgen!({
    path: "wit",
    world: "flashspin:host/spin-imports",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/redis.connection": RedisConnection,
        "spin:postgres/postgres.connection": PgConnection,
    },
});

use crate::state::RequestState;

/// Makes the Spin interfaces available to components linked by `linker`.
pub fn add_to_linker(
    linker: &mut wasmtime::component::Linker<RequestState>,
) -> wasmtime::Result<()> {
    SpinImports::add_to_linker::<RequestState, wasmtime::component::HasSelf<RequestState>>(
        linker,
        |state| state,
    )
}

/// The export a Redis-triggered component provides.
pub mod inbound_redis {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "flashspin:host/redis-handler",
        exports: { default: async },
    });
}
