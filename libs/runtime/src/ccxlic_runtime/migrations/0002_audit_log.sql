-- The licensing log (ccxlic_audit): what this service appended for each instance, in the unit of work that decided
-- it. `entry` is the entry's canonical JSON, exactly the bytes that are hashed (its `hash`) and that the next
-- entry's `prev` names; (instance, seq) keeps a chain from forking.
create table if not exists audit_log (
    instance text not null,
    seq      bigint not null,
    kind     text not null,
    at       timestamptz not null,
    entry    text not null,
    hash     text not null,
    primary key (instance, seq)
);
