-- Failed sign-ins per client address, whatever the user names (rotating names is bounded too).
create index if not exists sign_in_failures_by_client on sign_in_failures (client, at);
