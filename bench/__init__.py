"""Benchmarks run by hand: dataset seeders and load tests (see bench/README.md)."""
