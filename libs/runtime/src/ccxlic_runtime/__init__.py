"""The runtime every ccx-licensing service shares: settings, Kafka, PostgreSQL, metrics, health, logs, shutdown."""
