"""snfd: a Synnefo-shaped cloud stack, one Twisted daemon per node."""

__version__ = "0.1.0"
