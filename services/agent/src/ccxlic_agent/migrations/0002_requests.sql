-- The calls to the licensing authority the agent asked for (machine.Requested), written with the state that asked
-- for them and made by the caller (caller.py) once that has committed: each row is leased just before its call,
-- and deleted in the transaction that publishes the answer.
create table if not exists requests (
    id              text primary key,          -- the call's id (its answer names it)
    instance        text not null,
    call            jsonb not null,             -- machine.Call
    created         bigserial,
    next_attempt_at timestamptz not null default now()
);
create index if not exists requests_due on requests (next_attempt_at, created);
