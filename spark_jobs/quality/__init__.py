"""Data quality gates: Great Expectations suites (``expectations/*.json``) over real Delta data."""
