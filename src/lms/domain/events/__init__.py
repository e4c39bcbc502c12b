"""Events out: the event log, webhook endpoints and their deliveries."""
