"""A throw-away PostgreSQL server for the search's tests and benchmarks (as ``optuna.testing``
serves Optuna's): Debian's ``postgresql`` started as the ``postgres`` user in a temporary data
directory on a free local port, trust authentication, stopped and deleted afterwards.

Example:
    >>> with throwaway_postgres() as url:  # doctest: +SKIP
    ...     search("runs/cnn", SearchConfig(storage=url), out="s")
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError

INITDB = "/usr/lib/postgresql/*/bin/initdb"


def free_port() -> int:
    """A local TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a PostgreSQL server; yield its URL (``postgresql://postgres@127.0.0.1:PORT/
    postgres``); stop it (immediately) and delete its data on the way out.

    Raises:
        InputError: PostgreSQL is not installed (``make setup`` installs Debian's).
    """
    bins = sorted(glob.glob(INITDB))
    if not bins:
        raise InputError("PostgreSQL is not installed (make setup installs Debian's postgresql)")
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="edgepress-pg."))  # pytest's tmp is root-only (0700)
    os.chmod(root, 0o777)
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data, port = root / "data", free_port()
    try:
        subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                        "postgres"], check=True, capture_output=True)
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-l",
                        str(root / "log"), "-w", "-o",
                        f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
