"""Offline evaluation: ranking metrics, split protocols and side-by-side reports."""
