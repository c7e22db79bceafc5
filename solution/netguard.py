"""Network guard of the submission check, installed as ``sitecustomize`` in the process that runs ``run.py``.

``python -m solution.submission check`` copies this file to ``<temp>/netguard/sitecustomize.py`` and puts that
folder on ``PYTHONPATH``, so every Python process of the rehearsal (``run.py`` and anything it spawns) imports it
at start-up. It adds an audit hook (PEP 578, cannot be removed) that refuses every attempt to reach the network:
``connect``/``sendto``/``sendmsg`` on an internet socket to a non-loopback address, and name look-ups
(``getaddrinfo``, ``gethostbyname``, ``gethostbyaddr``) of anything but localhost. The refused call raises
``ConnectionRefusedError`` with a message that says why, and the attempt is appended to the file named by
``$KIT_NETGUARD_LOG`` (one JSON line: call, target, innermost frames), so the check fails even when the solution
catches the error. At exit the file of every imported module is written to ``$KIT_NETGUARD_IMPORTS`` (the check
uses it to prove the kit ran from the unpacked ZIP, not from the development checkout).

Only Python-level sockets are covered; the check also runs ``run.py`` in a separate network namespace
(``unshare -rn``) where the OS allows it, which cuts subprocesses and native code too. Standard library only.
"""

from __future__ import annotations

import atexit
import importlib.machinery
import importlib.util
import ipaddress
import json
import os
import socket
import sys
import sysconfig
import traceback

LOG_ENV = "KIT_NETGUARD_LOG"
IMPORTS_ENV = "KIT_NETGUARD_IMPORTS"
MESSAGE = "network access is cut: the contest runs without internet ({call} {target} refused by the submission check)"

_INET = (socket.AF_INET, socket.AF_INET6)
_STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"]) + os.sep
_SEND_EVENTS = ("socket.connect", "socket.sendto", "socket.sendmsg")
_LOOKUP_EVENTS = (
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
)


def is_local(host: object) -> bool:
    """True for loopback addresses and localhost (and for no address at all)."""
    if isinstance(host, tuple):
        host = host[0] if host else None
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None or host == "":
        return True
    host = str(host).lower()
    return host in ("localhost", "::1", "0:0:0:0:0:0:0:1") or host.startswith(("127.", "::ffff:127."))


def _is_numeric(host: object) -> bool:
    try:
        ipaddress.ip_address(host.decode() if isinstance(host, bytes) else str(host))
    except ValueError:
        return False
    return True


def _refuse(call: str, target: object) -> None:
    message = MESSAGE.format(call=call, target=target)
    stack = traceback.extract_stack()[:-3]
    frames = [f"{f.filename}:{f.lineno} in {f.name}" for f in stack][-8:]
    callers = [f for f in stack if not f.filename.startswith(_STDLIB)]
    where = f"{callers[-1].filename}:{callers[-1].lineno}" if callers else (frames[-1] if frames else "?")
    path = os.environ.get(LOG_ENV)
    if path:
        entry = {"call": call, "target": repr(target), "where": where, "message": message, "stack": frames}
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
    print(f"[netguard] {message}; called from {where}", file=sys.stderr, flush=True)
    raise ConnectionRefusedError(message)


def _audit(event: str, args: tuple) -> None:
    if not event.startswith("socket."):
        return
    if event in _SEND_EVENTS:
        sock, address = args[0], args[1] if len(args) > 1 else None
        if getattr(sock, "family", None) in _INET and not is_local(address):
            _refuse(event.removeprefix("socket."), address)
    elif event in _LOOKUP_EVENTS:
        host = args[0] if args else None
        if not is_local(host) and not (event == "socket.getaddrinfo" and _is_numeric(host)):
            _refuse(
                event.removeprefix("socket."), host
            )  # a numeric address is no look-up: its connect is caught


def _write_imports() -> None:
    path = os.environ.get(IMPORTS_ENV)
    if not path:
        return
    files = {name: getattr(m, "__file__", None) for name, m in list(sys.modules.items())}
    with open(f"{path}.{os.getpid()}", "w", encoding="utf-8") as fh:
        json.dump({k: v for k, v in files.items() if isinstance(v, str)}, fh)


def _chain_next_sitecustomize() -> None:
    """Run the sitecustomize this file shadows (e.g. Debian's), if there is one further down sys.path."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None and spec.origin != os.path.abspath(__file__):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def install() -> None:
    sys.addaudithook(_audit)
    atexit.register(_write_imports)


if __name__ == "sitecustomize":
    install()
    _chain_next_sitecustomize()
