//! The `voucher_order` table the exporter writes, created by the
//! migrations in a real PostgreSQL: they apply, apply again harmlessly, and
//! refuse rows no order can have.

use flashspin_core::order_export::MIGRATIONS;
use flashspin_testkit::PostgresServer;

fn migrate(db: &PostgresServer) {
    for (_, sql) in MIGRATIONS {
        db.psql(sql);
    }
}

fn row(id: u64, status: &str, version: u64) -> String {
    format!(
        "INSERT INTO voucher_order (id, user_id, voucher_id, status, amount, pay_type, \
         pay_deadline, create_time, update_time, version) VALUES ({id}, 7, 3, '{status}', 8000, \
         NULL, now() + interval '15 minutes', now(), now(), {version})"
    )
}

#[test]
fn the_migrations_create_the_orders_table_and_can_run_again() {
    let db = PostgresServer::start();
    migrate(&db);
    migrate(&db);
    db.psql(&row(9_007_199_254_740_993, "unpaid", 1));
    assert_eq!(
        db.psql("SELECT id, status, amount, pay_time IS NULL FROM voucher_order")
            .trim(),
        "9007199254740993|unpaid|8000|t",
        "64-bit ids keep every digit"
    );
    let columns = db.psql(
        "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) \
         FROM information_schema.columns WHERE table_name = 'voucher_order'",
    );
    assert_eq!(
        columns.trim(),
        "id,user_id,voucher_id,status,amount,pay_type,pay_deadline,pay_time,use_time,\
         refund_time,create_time,update_time,version,exported_at"
    );
}

#[test]
fn rows_no_order_can_have_are_refused() {
    let db = PostgresServer::start();
    migrate(&db);
    for bad in [
        row(1, "shipped", 1),
        row(2, "paid", 0),
        row(3, "paid", 1).replace("8000", "-1"),
        row(4, "paid", 1).replace("NULL", "'cash'"),
    ] {
        assert!(db.try_psql(&bad).is_err(), "accepted: {bad}");
    }
    assert_eq!(db.psql("SELECT count(*) FROM voucher_order").trim(), "0");
}
