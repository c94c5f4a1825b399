-- The runtime's tables, in every service schema (search_path is the service's schema).
create table if not exists processed_events (
    event_key    text primary key,          -- the input's idempotency key: CloudEvent id, or dlq:<topic>:<p>:<offset>
    processed_at timestamptz not null default now()
);

create table if not exists outbox (
    seq        bigserial primary key,       -- publication order
    topic      text not null,
    key        bytea,
    value      bytea not null,
    created_at timestamptz not null default now()
);
