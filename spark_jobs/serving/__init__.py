"""Serving: the streaming scorer that keeps ``recsys.recommendations`` fresh, and its tables."""
