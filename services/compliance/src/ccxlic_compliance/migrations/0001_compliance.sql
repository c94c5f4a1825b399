-- Compliance's schema: the state per instance and the full transition history.
create table instances (
    instance   text primary key,
    state      jsonb not null,        -- machine.State: the facts the rules need
    view       jsonb not null,        -- the data of the last licensing.compliance.changed
    seq        bigint not null,       -- transitions recorded so far
    updated_at timestamptz not null default now()
);

create table transitions (
    instance   text not null,
    seq        bigint not null,
    at         timestamptz not null,  -- event time the transition took effect (a deadline's own time when one fired)
    cause_id   text not null,         -- the input's CloudEvents id
    cause_type text not null,         -- the input's type
    evidence   text not null,         -- why, in words, e.g. "Premium 11 > 10 since 2026-03-02 10:02:00Z"
    view       jsonb not null,        -- the compliance state after the transition
    primary key (instance, seq)
);
