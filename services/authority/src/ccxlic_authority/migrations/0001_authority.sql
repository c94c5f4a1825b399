-- The licensing authority's state (search_path is its schema, `authority` by default).
create table if not exists signing_keys (
    name        text primary key,
    private_pem text not null,
    created_at  timestamptz not null default now()
);

create table if not exists virtual_accounts (
    name          text primary key,
    smart_account text not null,
    created_at    timestamptz not null
);

create table if not exists licenses (
    virtual_account text not null references virtual_accounts (name),
    license         text not null,
    quantity        integer not null check (quantity >= 0),
    primary key (virtual_account, license)
);

create table if not exists tokens (
    token             text primary key,
    virtual_account   text not null references virtual_accounts (name),
    description       text not null,
    created_at        timestamptz not null,
    expires_at        timestamptz not null,
    max_uses          integer not null,
    uses              integer not null default 0,
    revoked_at        timestamptz,
    export_controlled boolean not null
);

create table if not exists instances (
    instance             text primary key,
    virtual_account      text not null references virtual_accounts (name),
    status               text not null,          -- registered | deregistered
    registered_at        timestamptz not null,
    identity_serial      text not null,          -- the current identity certificate's serial
    identity_valid_until timestamptz not null,
    authorized_until     timestamptz,
    last_contact         timestamptz,
    last_usage           jsonb,                  -- the latest report's peaks per license
    last_report          jsonb                   -- the latest answer to a report
);

create table if not exists reservations (
    instance        text primary key,
    virtual_account text not null references virtual_accounts (name),
    counts          jsonb not null,
    status          text not null,                -- authorized | installed | returned
    code_serial     text not null,
    created_at      timestamptz not null,
    updated_at      timestamptz not null
);

create table if not exists classic (
    kind            text not null,                -- pak | device
    id              text not null,
    quantities      jsonb not null,               -- what is still classic
    converted       jsonb not null,               -- what went to smart accounts, in total
    virtual_account text,
    primary key (kind, id)
);

create table if not exists audit (
    seq    bigserial primary key,
    at     timestamptz not null default now(),
    actor  text not null,
    action text not null,
    detail jsonb not null
);
