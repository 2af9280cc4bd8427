"""Reliability tests: crash safety, carrier faults, backpressure and resources (issue 8)."""
