"""eigentone: real-time synthesis of learned physical instruments."""

__version__ = "0.1.0"
