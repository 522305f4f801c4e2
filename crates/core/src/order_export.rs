//! Orders in the shop's PostgreSQL: the schema the order exporter keeps
//! them in, as numbered migrations applied in order (`src/sql`).

/// Every migration, oldest first: its name and its SQL. Each one can be
/// applied again without harm (`IF NOT EXISTS`).
pub const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_voucher_order",
    include_str!("sql/0001_voucher_order.sql"),
)];
