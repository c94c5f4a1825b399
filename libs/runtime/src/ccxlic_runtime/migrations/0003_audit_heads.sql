-- Where each instance's licensing log stands: its last entry's number and hash, and the RFC 6962 frontier (32-byte
-- subtree roots, largest first), kept with every append so that appending and checkpointing read no entry again.
create table if not exists audit_heads (
    instance text primary key,
    seq      bigint not null,
    hash     text not null,
    frontier bytea not null
);
