"""earshot.listener: sources, query matching, sentiment, storage and the polling pipeline.

This package imports neither ``earshot.responders`` nor ``earshot.config``: settings are
passed in as plain arguments by the wiring in ``earshot.config``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("earshot")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

USER_AGENT = f"earshot/{__version__} (+https://github.com/earshot/earshot; social listening bot)"

__all__ = ["USER_AGENT", "__version__"]
