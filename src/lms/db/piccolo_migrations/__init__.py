"""Piccolo migrations of the lms app, applied in order by `lms migrate`."""
