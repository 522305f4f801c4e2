-- When a row last arrived from Redis: set by PostgreSQL when the exporter
-- inserts or replaces it. `exported_at - update_time` is how long a change
-- took to reach the table (the benchmark reports it as the export lag);
-- for a shop it dates what its other systems have seen.

ALTER TABLE voucher_order ADD COLUMN IF NOT EXISTS exported_at TIMESTAMPTZ NOT NULL DEFAULT now();
