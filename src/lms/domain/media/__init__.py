"""Locally stored lesson media, served to whoever holds a signed URL (with HTTP Range support)."""
