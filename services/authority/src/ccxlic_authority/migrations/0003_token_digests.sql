-- Registration tokens are kept as their SHA-256 only (as API tokens are): whoever reads the database or the list of
-- tokens cannot register with one. Each has a short public id (the digest's first 12 hex digits) to list and revoke
-- it by; the token itself is shown once, when it is made.
alter table tokens add column if not exists digest text;
update tokens set digest = encode(sha256(convert_to(token, 'UTF8')), 'hex') where digest is null;
alter table tokens add column if not exists id text;
update tokens set id = left(digest, 12) where id is null;
alter table tokens drop constraint if exists tokens_pkey;
alter table tokens drop column if exists token;
alter table tokens alter column digest set not null;
alter table tokens alter column id set not null;
alter table tokens add primary key (digest);
create unique index if not exists tokens_id on tokens (id);
