"""The web tier: several daphne processes serving one port, each on its own listening socket.

One daphne process is one Python interpreter, so one core at most (the GIL); on the 2-core target
it saturates near 600 requests/s of webhooks and health checks (docs/decisions/0016). This opens
one SO_REUSEPORT socket per child on the same address and starts --processes daphne children, each
on its own (`daphne --fd`): the kernel spreads new connections evenly over the sockets. One shared
socket did not spread them: whichever child was awake accepted a burst of keep-alive connections
and carried nearly all the load alone (decision 0019). WebSocket consumers already talk through the
Redis channel layer, so which child holds a socket does not matter.

The Procfile and bench/webhook.py both start the web tier through here:

    python -m config.web --processes 2 --port 8000 -- --access-log /dev/null

Stops every child on SIGTERM/SIGINT, and all of them (exit status of the first) when one exits:
the process manager then sees the web tier down rather than running at part strength.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAPHNE = Path(sys.executable).parent / "daphne"
DEFAULT_PROCESSES = 2
APPLICATION = "config.asgi:application"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--processes",
        type=int,
        default=int(os.environ.get("WEB_PROCESSES", DEFAULT_PROCESSES)),
        help=f"daphne processes (env WEB_PROCESSES, default {DEFAULT_PROCESSES})",
    )
    parser.add_argument("-b", "--bind", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("WEB_PORT", 8000)))
    parser.add_argument("--profile-dir", type=Path, help="run each child under cProfile, writing daphne-<n>.prof here")
    parser.add_argument("daphne_args", nargs="*", help="passed to each daphne (after --)")
    return parser.parse_args(argv)


def child_argv(fd: int, n: int, args: argparse.Namespace) -> list[str]:
    argv = [str(DAPHNE), "--fd", str(fd), *args.daphne_args, APPLICATION]
    if args.profile_dir:
        argv = [sys.executable, "-m", "cProfile", "-o", str(args.profile_dir / f"daphne-{n}.prof"), *argv]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    listeners = [
        socket.create_server((args.bind, args.port), backlog=1024, reuse_port=True)
        for _ in range(max(args.processes, 1))
    ]
    children = []
    for n, listener in enumerate(listeners):
        fd = listener.fileno()
        os.set_inheritable(fd, True)
        children.append(subprocess.Popen(child_argv(fd, n, args), cwd=ROOT, pass_fds=(fd,)))  # noqa: S603 - our own argv
    for listener in listeners:
        listener.close()  # each child holds its own
    print(
        f"web: {len(children)} daphne process(es) on http://{args.bind}:{args.port}/ "
        f"(pids {', '.join(str(c.pid) for c in children)})",
        flush=True,
    )

    stopping_since: float | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping_since
        stopping_since = stopping_since or time.monotonic()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    status = 0
    while any(child.poll() is None for child in children):
        ended = [child for child in children if child.returncode is not None]
        if ended and stopping_since is None:
            code = ended[0].returncode
            status = 128 - code if code < 0 else code or 1  # a signal as the shell reports it
            print(f"web: daphne {ended[0].pid} exited with {ended[0].returncode}; stopping the others", flush=True)
            stop(signal.SIGTERM, None)
        if stopping_since is not None and time.monotonic() - stopping_since > 10:
            for child in children:
                if child.poll() is None:
                    child.kill()
        time.sleep(0.2)
    return status


if __name__ == "__main__":
    sys.exit(main())
