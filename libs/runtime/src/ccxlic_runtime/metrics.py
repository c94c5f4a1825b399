"""The runtime's own Prometheus metrics, on an injected registry (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OVERFLOW = "_overflow"


class InstanceLabels:
    """The `product_instance` label of a product instance, capped: instance ids come from publishers, so after
    `cap` distinct ones every further instance is labelled `_overflow` (a counter there sums them; a gauge there
    holds the last one written: a sign to raise CCXLIC_METRICS_MAX_INSTANCES, not a figure)."""

    def __init__(self, cap: int = 1000) -> None:
        self.cap = cap
        self.seen: set[str] = set()

    def __call__(self, instance: str) -> str:
        if instance in self.seen:
            return instance
        if len(self.seen) < self.cap:
            self.seen.add(instance)
            return instance
        return OVERFLOW


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.processed = Counter(
            "ccxlic_events_processed_total", "Input events handled", ["service", "topic", "type"], registry=registry
        )
        self.dead_lettered = Counter(
            "ccxlic_events_dead_lettered_total",
            "Input records sent to licensing.dead-letter",
            ["service", "topic"],
            registry=registry,
        )
        self.unit_open = Gauge(
            "ccxlic_unit_of_work_open",
            "1 while a batch's PostgreSQL transaction is open (its records handled, not yet committed)",
            ["service"],
            registry=registry,
        )
        self.rerouted = Counter(
            "ccxlic_events_rerouted_total",
            "Input events found on another partition than their subject's (another partitioner, or no key), published"
            " again keyed by their subject",
            ["service", "topic"],
            registry=registry,
        )
        self.retries = Counter(
            "ccxlic_handler_retries_total",
            "Handler attempts that failed and were retried",
            ["service"],
            registry=registry,
        )
        self.latency = Histogram(
            "ccxlic_event_processing_seconds",
            "Time to handle one input event, its database transaction included (its batch's time over its events: "
            "one observation per event)",
            ["service"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.batch = Histogram(
            "ccxlic_batch_processing_seconds",
            "Time to handle one batch of input records, its database transaction included (one observation per batch)",
            ["service"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.relay_failures = Counter(
            "ccxlic_outbox_relay_failures_total",
            "Outbox relay attempts that failed (the broker or the database away) and will be retried",
            ["service"],
            registry=registry,
        )
        self.published = Counter(
            "ccxlic_outbox_published_total", "Events the outbox relay published", ["service"], registry=registry
        )
        self.consumer_lag = Gauge(
            "ccxlic_consumer_lag_records",
            "Input records of a partition this worker owns that it has not handled yet: the partition's high "
            "watermark minus what it fetched, plus what it fetched and still holds (as of its last fetch)",
            ["service", "topic", "partition"],
            registry=registry,
        )
        self.consumed_timestamp = Gauge(
            "ccxlic_consumed_record_timestamp_seconds",
            "Kafka timestamp of the newest input record handled: time() minus this is how far the service is behind",
            ["service", "topic"],
            registry=registry,
        )
