-- The consumption computer's schema. Live state per instance and agent; every accepted fact; every report.
create table instances (
    instance    text primary key,
    watermark   timestamptz,
    roster_at   timestamptz,
    roster_id   text,
    ports       jsonb not null default '{}',
    limits      jsonb not null default '{}',
    next_close  timestamptz,            -- start of the first reporting interval not closed yet
    change_seq  bigint not null default 0,
    published   jsonb                   -- the data of the last licensing.consumption.changed
);

create table sessions (
    instance   text not null,
    agent_id   text not null,
    signed_in  boolean not null,
    license    text not null,
    why        text not null,
    last_at    timestamptz not null,
    last_id    text not null,
    cause      text not null,
    primary key (instance, agent_id)
);

-- Accepted inputs that count toward peaks (rejected sign-ins are not facts). kind: i(n), o(ut), r(oster), p(orts).
create table facts (
    instance  text not null,
    at        timestamptz not null,
    event_id  text not null,
    kind      text not null,
    agent_id  text,
    license   text,
    why       text,
    body      jsonb,
    primary key (instance, at, event_id)
);

create table reports (
    instance        text not null,
    interval_start  timestamptz not null,
    revision        int not null,
    interval_end    timestamptz not null,
    peak            jsonb not null,
    witness         jsonb not null,
    closed_at       timestamptz not null,
    primary key (instance, interval_start, revision)
);
