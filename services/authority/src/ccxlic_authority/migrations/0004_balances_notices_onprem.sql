-- What an SSM administrator sees and gets: balances per virtual account (computed), the smart account's
-- notification addresses and the notices mailed to them (each once: a stable key), and SSM On-Prem synchronisation.

-- Each smart account's notification addresses ("Configure Admin email address in Cisco SSM").
create table if not exists smart_accounts (
    name   text primary key,
    emails jsonb not null default '[]'
);
-- Whether the account was in deficit at its last change: a notice is mailed when it goes into deficit.
alter table virtual_accounts add column if not exists in_deficit boolean not null default false;

-- Every notice, once per key (an account's deficit episode, an instance's authorization that lapsed...).
create table if not exists notices (
    id            bigserial primary key,
    key           text not null unique,
    smart_account text not null,
    kind          text not null,
    subject       text not null,
    at            timestamptz not null,
    notification  jsonb not null,
    emailed_to    jsonb not null
);
-- The mail to send, written with its notice and sent after commit (ccxlic_runtime.delivery).
create table if not exists deliveries (
    id              bigserial primary key,
    channel         text not null,
    notification    jsonb not null,
    status          text not null default 'pending' check (status in ('pending', 'sent', 'failed')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    created_at      timestamptz not null default now(),
    finished_at     timestamptz
);
create index if not exists deliveries_due on deliveries (channel, next_attempt_at) where status = 'pending';

-- central: the on-prem authorities, the virtual accounts each serves, and the last sync request applied.
create table if not exists onprems (
    name             text primary key,
    public_key_pem   text not null,
    virtual_accounts jsonb not null,
    registered_at    timestamptz not null,
    last_seq         bigint not null default 0,
    last_sync_at     timestamptz
);
-- central: the usage an on-prem reported at its last sync (replaced whole by the next one).
create table if not exists remote_usage (
    onprem          text not null references onprems (name),
    virtual_account text not null references virtual_accounts (name),
    instance        text not null,
    part            text not null check (part in ('reported', 'reserved')),
    usage           jsonb not null,
    primary key (onprem, virtual_account, instance, part)
);
-- onprem: the sync requests made and the answers applied.
create table if not exists sync_state (
    one              boolean primary key default true check (one),
    last_request_seq bigint not null default 0,
    last_applied_seq bigint not null default 0,
    last_sync_at     timestamptz,
    central          text
);
insert into sync_state (one) values (true) on conflict do nothing;

-- Classic licenses: a device fully converted leaves the portal ("the device UUID will be removed from the LRP").
alter table classic add column if not exists removed_at timestamptz;
