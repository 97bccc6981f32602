"""The rolloutsim command line: the one place that knows policies, sim and live."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rolloutsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
