"""Producers: where events enter the lakehouse.

Pure generators build records (``synthetic``: a seeded world and its sessions, with optional
malformed records and duplicates; ``movielens``: a MovieLens 100k replay; ``jsonl``: lines of a
file as they are); ``kafka_sink`` sends them; ``catalog`` loads the items and users they refer
to into Delta. Only ``catalog`` needs Spark, and nothing here imports it unless asked.
"""
