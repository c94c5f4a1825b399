-- Failed sign-ins, per user name and client address: enough of them in a window and that pair waits (a guessing
-- client cannot lock the user out of every other address).
create table if not exists sign_in_failures (
    username text not null,
    client   text not null,
    at       timestamptz not null default now()
);
create index if not exists sign_in_failures_by_pair on sign_in_failures (username, client, at);
