"""Administration: users, review queues, settings, audit, bootstrap."""
