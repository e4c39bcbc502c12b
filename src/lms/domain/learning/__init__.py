"""Learning: enrollment, the progress heartbeat, lesson and course completion, dashboards."""
