"""Business domains: one package each, one file per layer."""
