-- Sessions are updated in place many times (each sign-in and sign-out of the agent): room on each page lets
-- PostgreSQL keep the new row version on the same page (a HOT update, no index entry) and prune the old one without
-- waiting for VACUUM, so the table as a busy run leaves it stays near its compacted size.
alter table sessions set (fillfactor = 60);
