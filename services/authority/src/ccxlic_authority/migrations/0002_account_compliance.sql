-- The licensing authority judges compliance per virtual account (SSM's model): since when an account is out of
-- compliance, and the usage its licenses must cover to end that (the highest its instances reported while short).
alter table virtual_accounts add column if not exists ooc_since timestamptz;
alter table virtual_accounts add column if not exists ooc_required jsonb;
