-- The input partition an instance's records arrive on (a `*` tick on partition p reaches the instances of p), and
-- the latest time of an accepted fact (intervals beyond it + the session limit are quiet: not reported).
alter table instances add column partition int;
alter table instances add column last_fact_at timestamptz;
create index instances_by_partition on instances (partition);
