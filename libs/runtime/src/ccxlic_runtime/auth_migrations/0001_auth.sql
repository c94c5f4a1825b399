-- Who may use the admin API and the console (schema `auth`, shared by every service that checks a caller).
-- Secrets are never stored: passwords as argon2id hashes, session ids and API tokens as SHA-256 digests.
create table if not exists users (
    name          text primary key,
    role          text not null check (role in ('viewer', 'admin')),
    password_hash text not null,
    created_at    timestamptz not null default now()
);

create table if not exists sessions (
    digest     text primary key,
    username   text not null references users(name) on delete cascade,
    csrf       text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null
);
create index if not exists sessions_expiry on sessions (expires_at);

create table if not exists tokens (
    id         text primary key,
    digest     text not null unique,
    username   text not null references users(name) on delete cascade,
    label      text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz,
    revoked_at timestamptz
);
