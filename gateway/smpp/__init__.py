"""Sans-IO SMPP 3.4: no trio, no socket, no clock, no randomness."""
