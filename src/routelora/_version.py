"""The package version, in a module of its own so that the library's modules need not import the package face."""

__version__ = "0.1.0"
