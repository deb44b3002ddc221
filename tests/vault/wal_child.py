"""Child process for the WAL crash tests: append from several threads, say what was acked.

Usage::

    python wal_child.py DIR RUN THREADS [--segment-size N] [--fsize BYTES]

Writer ``w`` appends entries ``n = 0, 1, 2...`` in sync mode, one at a time,
with data derived from ``(run, w, n)`` (see :func:`make_data`), so the parent
can tell a genuine entry from garbage and knows exactly what was submitted.
It prints one line per event, each with a single ``write()`` to a pipe
(atomic below PIPE_BUF), so a kill -9 never leaves half a line behind::

    R                         the WAL is open (torn tail repaired)
    I run w n                 about to append (n)
    A run w n seq digest      acknowledged: fsynced, sequence seq
    F run w n errno           append failed with WALFatalError (cause errno)

``--fsize`` sets RLIMIT_FSIZE (SIGXFSZ ignored) so writes past BYTES fail
with EFBIG: a real kernel write error instead of an injected one.

With ``$PROJECT_O_VAULT_KEY`` set, the WAL seals every record with it (as
the supervisor would).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import msgpack

#: Pad each entry to roughly the size of a real memory write (~256 bytes).
PAD_REPEAT = 3


def make_data(run: int, writer: int, n: int) -> dict[str, Any]:
    """The data writer ``writer`` appends as its ``n``-th entry in run ``run``."""
    tag = hashlib.sha256(f"{run}:{writer}:{n}".encode()).hexdigest()
    return {"run": run, "w": writer, "n": n, "pad": tag * PAD_REPEAT}


def digest(data: Any) -> str:
    """Short fingerprint of an entry's data, printed with each acknowledgement."""
    return hashlib.sha256(msgpack.packb(data)).hexdigest()[:16]


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _writer(wal: Any, run: int, writer: int, stop: threading.Event) -> None:
    from project_o.errors import WALFatalError

    n = 0
    while not stop.is_set():
        data = make_data(run, writer, n)
        _say(f"I {run} {writer} {n}")
        try:
            seq = wal.append("crash_test", data)
        except WALFatalError as exc:
            cause = exc.__cause__
            _say(f"F {run} {writer} {n} {getattr(cause, 'errno', 0)}")
            return
        _say(f"A {run} {writer} {n} {seq} {digest(data)}")
        n += 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("run", type=int)
    parser.add_argument("threads", type=int)
    parser.add_argument("--segment-size", type=int, default=64 * 1024)
    parser.add_argument("--fsize", type=int, default=None)
    args = parser.parse_args()
    if args.fsize is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize, hard))

    from project_o.vault.sealing import load_keyring
    from project_o.vault.wal import WAL

    wal = WAL.open(args.directory, durability="sync", segment_size=args.segment_size,
                   keyring=load_keyring())
    _say("R")
    stop = threading.Event()
    threads = [
        threading.Thread(target=_writer, args=(wal, args.run, w, stop)) for w in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:  # crash mode: runs until killed; fsize mode: until EFBIG
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
