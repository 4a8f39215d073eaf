"""The gateway: aiohttp app factory, routes, middlewares, portal and CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("meter-gateway")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
