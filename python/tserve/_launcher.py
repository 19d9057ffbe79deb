"""The ``tserve`` and ``tserve-archiver`` commands of the wheel: each replaces this Python
process with its binary (so the server's pid is the one a supervisor started, and SIGTERM
reaches it), telling the binary where the installed torch keeps libtorch and which Python runs
TorchServe's backend (this one, which has ``torchserve`` as a dependency).

Run under another name (a ``torchserve`` link to ``tserve``, as the container image has), the
server takes that name, and ``torchserve --stop`` finds it.
"""

import os
import sys
from importlib.util import find_spec

_BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")


def _torch_lib_dir():
    """The installed torch's ``lib`` folder, found without importing torch (which takes seconds)."""
    spec = find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("tserve: the torch package is not installed here; pip install torch==2.11.0")
    for folder in spec.submodule_search_locations:
        lib = os.path.join(folder, "lib")
        if os.path.isfile(os.path.join(lib, "libtorch_cpu.so")):
            return lib
    sys.exit("tserve: the installed torch has no lib/libtorch_cpu.so; pip install torch==2.11.0")


def _run(binary, default_name):
    env = dict(os.environ)
    # The binaries' rpath already points at site-packages/torch/lib beside this package; the
    # variable covers a torch installed elsewhere on sys.path (a --system-site-packages venv, a
    # user site, a .pth path).
    lib = _torch_lib_dir()
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (lib, env.get("LD_LIBRARY_PATH")) if p)
    env.setdefault("TSERVE_PYTHON", sys.executable)
    # The command's own name (`tserve`, or `torchserve` through the image's link); `python -m
    # tserve` runs as `.../__main__.py`, which is no name to run under.
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not name or name.endswith(".py"):
        name = default_name
    path = os.path.join(_BIN, binary)
    try:
        os.execve(path, [name, *sys.argv[1:]], env)
    except OSError as e:
        sys.exit(f"tserve: cannot run {path}: {e}")


def tserve():
    _run("tserve", "tserve")


def tserve_archiver():
    _run("tserve-archiver", "tserve-archiver")
