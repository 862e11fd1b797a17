"""The ``sanic-wsauth`` command (also ``python -m sanic_wsauth``).

Exit codes: 0 success; 1 the command failed (bad ticket, server error);
2 usage or configuration error (missing secret, bad arguments).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from .demo import API_KEY_ENV, create_app

    # Workers re-import the app, so everything they need travels in the
    # environment, generated once here so that all workers share it.
    if not os.environ.get("WSAUTH_SECRET"):
        os.environ["WSAUTH_SECRET"] = secrets.token_urlsafe(48)
        print(
            "warning: WSAUTH_SECRET is not set; generated a secret for this run only. "
            "Several workers share it, but other hosts and restarts need one fixed secret.",
            file=sys.stderr,
        )
    if not os.environ.get(API_KEY_ENV):
        os.environ[API_KEY_ENV] = secrets.token_urlsafe(24)
        print(f"demo API key: {os.environ[API_KEY_ENV]}", file=sys.stderr)
    if args.redis:
        os.environ["WSAUTH_REDIS_URL"] = args.redis
    if args.max_age is not None:
        os.environ["WSAUTH_MAX_AGE"] = str(args.max_age)

    loader = AppLoader(factory=create_app)
    app = loader.load()
    app.prepare(
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        debug=False,
        motd=False,
    )
    print(f"demo: http://{args.host}:{args.port}/  (websocket /ws)", file=sys.stderr, flush=True)
    Sanic.serve(primary=app, app_loader=loader)
    return EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sanic-wsauth",
        description="Signed one-time WebSocket tickets for Sanic.",
        epilog="Exit codes: 0 success, 1 failure, 2 usage or configuration error.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the demo server")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--workers", type=_positive_int, default=1)
    demo.add_argument("--max-age", type=_positive_int, default=None, help="ticket lifetime (s)")
    demo.add_argument(
        "--redis",
        default=os.environ.get("WSAUTH_REDIS_URL") or None,
        metavar="URL",
        help="Redis URL for the replay set (env WSAUTH_REDIS_URL)",
    )
    demo.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=True,
        help="write Sanic's access log (tickets are redacted)",
    )
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return EXIT_FAILED
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
