"""End-to-end tests: the real gateway (HTTP API in, SMPP out) against the node-smpp SMSC
simulator (../shared/peers/smsc_sim.js). ``harness.py`` is shared with other suites."""
