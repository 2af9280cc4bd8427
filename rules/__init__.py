"""Pure compliance rules engine: no I/O, no clock (``now`` is an argument)."""
