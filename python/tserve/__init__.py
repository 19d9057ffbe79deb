"""tserve: a PyTorch model server in Rust, installed with its binaries in ``tserve/bin``.

The ``tserve`` and ``tserve-archiver`` commands are :mod:`tserve._launcher`, which runs those
binaries on the libtorch of the installed ``torch`` package.
"""

from tserve._version import __version__

__all__ = ["__version__"]
