-- The licensing log's checkpoints (issue "Proof an auditor accepts"): each instance's signing key, made on its first
-- usage report, and every checkpoint the licensing authority countersigned, as the signed note it returned.
create table if not exists log_keys (
    instance    text primary key,
    private_pem text not null,
    created_at  timestamptz not null default now()
);

create table if not exists checkpoints (
    instance text not null,
    origin   text not null,
    size     bigint not null,
    note     text not null,
    at       timestamptz not null default now(),
    primary key (origin, size)
);
