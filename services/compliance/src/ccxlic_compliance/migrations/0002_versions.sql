-- A version per instance row: a worker saves only over the version it read, so two workers (a `*` tick handled
-- by the one that owns the clock partition, or a partition moved in a rebalance) never overwrite each other.
alter table instances add column version bigint not null default 1;
