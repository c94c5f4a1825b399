-- The Smart Agent's state per instance (search_path is its schema, `agent` by default).
create table if not exists instances (
    instance   text primary key,
    state      jsonb not null,          -- machine.State
    partition  int not null,
    version    bigint not null,
    updated_at timestamptz not null default now()
);

create table if not exists calls (
    instance  text not null,
    seq       bigint not null,          -- the instance's call number
    at        timestamptz not null,     -- event time of the call
    operation text not null,
    ok        boolean not null,
    message   text not null,
    primary key (instance, seq)
);
