"""Benchmarks of ai4lab: each writes JSON to bench/results/ and prints a short table."""
