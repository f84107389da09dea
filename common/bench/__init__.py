"""Benchmarks: NAS-Bench-201 files and NATS-Bench topology folders or archives, read once into
the small cached table a search queries every epoch."""
