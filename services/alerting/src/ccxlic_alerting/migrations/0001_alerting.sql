-- Alerting's schema: the rules' state per instance, current alerts, their full history, silences, deliveries.
create table instances (
    instance text primary key,
    state    jsonb not null           -- machine.State: active alerts and the last compliance state
);

create table alerts (
    alert_id       text primary key,
    instance       text not null,
    alert          text not null,
    severity       text not null,
    state          text not null check (state in ('active', 'resolved')),
    raised_at      timestamptz not null,
    resolved_at    timestamptz,
    resolve_reason text,
    summary        text not null,
    deadline       timestamptz,
    details        jsonb not null default '{}',
    notified_at    timestamptz,       -- event time of the last notification (null: held back so far)
    notifications  integer not null default 0
);
create index alerts_by_state on alerts (state, instance);

create table alert_history (
    seq      bigserial primary key,
    alert_id text not null references alerts (alert_id),
    at       timestamptz not null,    -- event time
    kind     text not null,           -- raised | notified:<kind> | held | resolved
    text     text not null,
    cause_id text not null            -- the input's CloudEvents id
);
create index alert_history_by_alert on alert_history (alert_id, seq);

create table silences (
    id         text primary key,
    instance   text,
    alert      text,
    starts_at  timestamptz not null,
    ends_at    timestamptz not null,
    author     text not null,
    comment    text not null,
    created_at timestamptz not null default now(),
    deleted_at timestamptz,
    check (instance is not null or alert is not null),
    check (ends_at > starts_at)
);

create table deliveries (
    id              bigserial primary key,
    alert_id        text not null references alerts (alert_id),
    channel         text not null,
    kind            text not null,
    notification    jsonb not null,   -- what the channel renders
    status          text not null default 'pending' check (status in ('pending', 'sent', 'failed')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    created_at      timestamptz not null default now(),
    finished_at     timestamptz
);
create index deliveries_due on deliveries (channel, next_attempt_at) where status = 'pending';
