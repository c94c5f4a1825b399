-- A reservation site's usage, as its usage bundles bring it (issue "Proof an auditor accepts"): the latest revision
-- of each interval's peaks, per license.
create table if not exists reservation_usage (
    instance       text not null,
    interval_start timestamptz not null,
    revision       integer not null,
    peak           jsonb not null,
    uploaded_at    timestamptz not null,
    primary key (instance, interval_start)
);
