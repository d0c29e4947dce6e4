"""The edge relay: trackers in, durable journal, forwarded out. See DESIGN.md for the data path."""

__version__ = "0.1.0"
