"""The `lapse` subcommands, one module each; starter.py wires them together."""
