"""The event contract shared by producers and the ingest stream."""
