"""Outgoing email and SMS through a transactional outbox: never lost, never blocking a request."""
