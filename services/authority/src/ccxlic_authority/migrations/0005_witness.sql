-- The authority as the licensing logs' witness: each instance's log key, pinned when first seen, and every
-- checkpoint countersigned (the note as returned).
create table if not exists log_keys (
    instance   text primary key,
    public_key text not null,
    pinned_at  timestamptz not null
);

create table if not exists witnessed (
    instance text not null,
    origin   text not null,
    size     bigint not null,
    root     bytea not null,
    note     text not null,
    at       timestamptz not null,
    primary key (origin, size)
);
