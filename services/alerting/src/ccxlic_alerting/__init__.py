"""Alerting: compliance changes and failures become deduplicated alerts, delivered by email, syslog and webhook."""
