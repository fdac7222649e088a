"""Housekeeping of the lakehouse: compaction and vacuum of the tables (``tables``), removal of
checkpoint and drift-plot folders nothing uses any more (``leftovers``)."""
