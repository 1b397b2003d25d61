"""infernet: a decentralized GPU inference network."""

__version__ = "0.1.0"
