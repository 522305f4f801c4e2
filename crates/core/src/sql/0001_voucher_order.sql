-- Voucher orders as the shop's own systems read them: one row per order,
-- with the columns of the classic flash-sale schema (id, user_id,
-- voucher_id, pay_type, status, pay_time, use_time, refund_time,
-- create_time, update_time) plus what this app adds: the amount paid and
-- the pay deadline.
--
-- Rows are written by the order exporter from the events Redis keeps for
-- each change, at least once and in any order: `version` counts an order's
-- changes, and an upsert only ever replaces a row with a later version, so
-- a replayed or late event never moves an order backwards.

CREATE TABLE IF NOT EXISTS voucher_order (
    id           BIGINT PRIMARY KEY,
    user_id      BIGINT NOT NULL,
    voucher_id   BIGINT NOT NULL,
    status       TEXT NOT NULL
                 CHECK (status IN ('unpaid', 'paid', 'used', 'refunded', 'cancelled', 'expired')),
    amount       BIGINT NOT NULL CHECK (amount >= 0),
    pay_type     TEXT CHECK (pay_type IN ('alipay', 'wechat', 'card')),
    pay_deadline TIMESTAMPTZ,
    pay_time     TIMESTAMPTZ,
    use_time     TIMESTAMPTZ,
    refund_time  TIMESTAMPTZ,
    create_time  TIMESTAMPTZ NOT NULL,
    update_time  TIMESTAMPTZ NOT NULL,
    version      BIGINT NOT NULL CHECK (version >= 1)
);

CREATE INDEX IF NOT EXISTS voucher_order_user ON voucher_order (user_id, create_time DESC);
CREATE INDEX IF NOT EXISTS voucher_order_voucher ON voucher_order (voucher_id, status);
