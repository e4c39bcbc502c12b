"""Certificates: issued on completion, signed as Open Badges 3.0 credentials, verified by anyone."""
