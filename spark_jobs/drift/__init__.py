"""Drift checks: compare a reference window with the current window and record the verdict."""
