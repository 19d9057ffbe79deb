"""``python -m tserve``: the ``tserve`` command."""

from tserve._launcher import tserve

tserve()
