"""The package version, in a module of its own so that any module can import it
without importing the package (and the whole API) first."""

__version__ = "0.1.0"
