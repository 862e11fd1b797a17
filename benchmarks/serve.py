"""Start a benchmark server: ``python -m benchmarks.serve --port P --workers N``.

The variant and secrets come from the environment (see
:mod:`benchmarks.server`); the app is built by a factory through Sanic's
``AppLoader`` so that every worker process re-imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from sanic_wsauth._shutdown import managed_shutdown

    from .server import create_app

    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--single-process", action="store_true", help="serve in this process (quick runs)"
    )
    args = parser.parse_args(argv)

    if args.single_process:
        app = create_app()
        app.prepare(
            host=args.host,
            port=args.port,
            single_process=True,
            access_log=False,
            debug=False,
            motd=False,
            verbosity=0,
        )
        Sanic.serve_single(primary=app)
        return 0
    loader = AppLoader(factory=create_app)
    app = loader.load()
    app.prepare(
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        debug=False,
        motd=False,
        verbosity=0,
    )
    with managed_shutdown(app):
        Sanic.serve(primary=app, app_loader=loader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
