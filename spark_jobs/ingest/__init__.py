"""Kafka -> bronze (raw + coordinates) -> silver (validated, typed, deduplicated) + quarantine."""
