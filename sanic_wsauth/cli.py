"""The ``sanic-wsauth`` command (also ``python -m sanic_wsauth``).

Subcommands:

- ``demo``: run the demo server.
- ``secret``: print a new random secret for ``WSAUTH_SECRET``.
- ``issue``: mint a ticket with the secret from the environment.
- ``inspect``: decode a ticket without trusting it; ``--verify`` checks it.

Exit codes: 0 success; 1 the command failed (a bad or invalid ticket, a
server error); 2 usage or configuration error (bad arguments, missing or weak
secret, bad JSON). Errors are one line on stderr; the secret is never printed.
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import math
import os
import secrets
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import IO, Any, NoReturn

from .exceptions import (
    AudienceMismatch,
    BadSignature,
    ConfigurationError,
    ForbiddenError,
    IPMismatch,
    MalformedTicket,
    TicketExpired,
    TicketNotYetValid,
    TicketTooLarge,
    WSAuthError,
)
from .tokens import (
    DEFAULT_LEEWAY,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_TOKEN_BYTES,
    MIN_KEY_BYTES,
    SALT,
    TicketIssuer,
    TicketVerifier,
    decode_unverified,
)

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "SECRET_ENV", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: Where ``issue`` and ``inspect --verify`` read the secret, first match wins.
SECRET_ENV = ("WSAUTH_SECRET", "SANIC_WSAUTH_SECRET")
#: ``secret --bytes`` at most (the signing key derived from it is 32 bytes).
MAX_SECRET_BYTES = 1024

_PROG = "sanic-wsauth"
_EXIT_CODES = (
    "exit codes: 0 success; 1 failed (bad or invalid ticket); "
    "2 usage or configuration error (bad arguments, missing or weak secret, bad JSON)"
)
_SECRET_HELP = (
    "The secret is read from the environment: WSAUTH_SECRET, else SANIC_WSAUTH_SECRET\n"
    f"(at least {MIN_KEY_BYTES} bytes; make one with `sanic-wsauth secret`). "
    "It is never printed."
)


class _UsageError(Exception):
    """A usage or configuration problem: exit 2 with a one-line message."""


class _Failed(Exception):
    """The command ran but its subject is bad (an invalid ticket): exit 1."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (no usage dump) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _fail(message: str) -> None:
    print(f"{_PROG}: {message}", file=sys.stderr)


_STDIN_LIMIT = 1 << 20


_LOG_LEVEL_ENV = "WSAUTH_DEMO_LOG_LEVEL"
_LOGGERS = ("sanic.root", "sanic.access", "sanic.error", "sanic.server", "sanic.websockets")


def _demo_app() -> Any:
    """The demo app with ``--log-level`` applied (module level: workers re-import it)."""
    import logging

    from .demo import create_app

    app = create_app()
    for name in (*_LOGGERS, "websockets", "sanic_wsauth"):
        logging.getLogger(name).setLevel(os.environ[_LOG_LEVEL_ENV])
    return app


def _cmd_demo(args: argparse.Namespace) -> int:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from ._shutdown import managed_shutdown
    from .demo import API_KEY_ENV, create_app

    # Workers re-import the app, so everything they need travels in the
    # environment, generated once here so that all workers share it.
    if not any(os.environ.get(name) for name in SECRET_ENV):
        os.environ["WSAUTH_SECRET"] = secrets.token_urlsafe(48)
        print(
            "warning: WSAUTH_SECRET is not set; generated a secret for this run only. "
            "Several workers share it, but other hosts and restarts need one fixed secret.",
            file=sys.stderr,
        )
    if not os.environ.get(API_KEY_ENV):
        os.environ[API_KEY_ENV] = secrets.token_urlsafe(24)
        print(f"demo API key: {os.environ[API_KEY_ENV]}", file=sys.stderr)
    # A flag wins: the SANIC_-prefixed variable would otherwise, through
    # app.config, override it silently.
    if args.redis:
        os.environ["WSAUTH_REDIS_URL"] = args.redis
        if "SANIC_WSAUTH_REDIS_URL" in os.environ:  # set, even empty, it would win
            os.environ["SANIC_WSAUTH_REDIS_URL"] = args.redis
    if args.max_age is not None:
        os.environ["WSAUTH_MAX_AGE"] = str(args.max_age)
        if "SANIC_WSAUTH_MAX_AGE" in os.environ:
            os.environ["SANIC_WSAUTH_MAX_AGE"] = str(args.max_age)

    if args.log_level:
        os.environ[_LOG_LEVEL_ENV] = args.log_level
    loader = AppLoader(factory=_demo_app if args.log_level else create_app)
    app = loader.load()
    try:
        # Fail here, with one line, rather than with a traceback from Sanic's main process.
        wsauth = app.ctx.wsauth
        wsauth._make_store(wsauth.configure())  # a bad Redis URL too (nothing connects)
    except WSAuthError as exc:
        print(f"sanic-wsauth: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _check_listen(args.host, args.port)
    app.prepare(
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        debug=False,
        motd=False,
    )
    print(f"demo: http://{args.host}:{args.port}/  (websocket /ws)", file=sys.stderr, flush=True)
    with managed_shutdown(app) as serving:
        try:
            Sanic.serve(primary=app, app_loader=loader)
        except (OSError, EOFError) as exc:
            if serving.signalled and isinstance(exc, (ConnectionError, EOFError)):
                return EXIT_OK  # asked to stop; Sanic's manager went with the signal
            if getattr(exc, "errno", None) in _LISTEN_ERRNOS and not serving.started:
                # Taken in the moment since _check_listen.
                raise _Failed(f"error: cannot listen on {args.host}:{args.port}: {exc}") from None
            raise _Failed(f"error: the server stopped on {type(exc).__name__}: {exc}") from None
    return EXIT_OK


#: What binding a listening socket fails with (any other error is not "cannot listen").
_LISTEN_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


def _check_listen(host: str, port: int) -> None:
    """Fail with one line, before Sanic starts, where the demo cannot listen."""
    from sanic.server.socket import bind_socket  # how Sanic itself binds

    try:
        bind_socket(host, port).close()
    except OSError as exc:  # an unknown host (gaierror), a port taken, ...
        reason = exc.strerror or str(exc)
        raise _Failed(f"error: cannot listen on {host}:{port}: {reason}") from None
    except (TypeError, ValueError):  # a name IDNA cannot encode (UnicodeError)
        raise _Failed(f"error: cannot listen on {host!r}: not a host name or address") from None


def _read_secret() -> tuple[str, str]:
    """Return ``(variable name, secret)`` from the first non-empty variable."""
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value:
            return name, value
    raise _UsageError(
        "no secret: set WSAUTH_SECRET (or SANIC_WSAUTH_SECRET) to the server's secret; "
        "make a new one with `sanic-wsauth secret`"
    )


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _parse_claims(text: str) -> dict[str, Any]:
    try:
        claims = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _UsageError(f"--claims is not valid JSON: {exc}") from None
    if not isinstance(claims, dict):
        raise _UsageError('--claims must be a JSON object, e.g. \'{"role": "admin"}\'')
    return claims


def _cmd_secret(args: argparse.Namespace) -> int:
    print(secrets.token_urlsafe(args.bytes))
    return EXIT_OK


def _cmd_issue(args: argparse.Namespace) -> int:
    claims = _parse_claims(args.claims) if args.claims is not None else None
    name, secret = _read_secret()
    try:
        # Any size (a verifier may allow more than the default): the warning
        # below says when the default would refuse it.
        issuer = TicketIssuer(secret, salt=args.salt, max_age=args.max_age)
    except ConfigurationError as exc:
        raise _UsageError(f"{name}: {exc}") from None
    try:
        token = issuer.issue(
            args.subject, audience=args.audience, client_ip=args.client_ip, claims=claims
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    if len(token) > DEFAULT_MAX_TOKEN_BYTES:
        _fail(
            f"warning: the ticket is {len(token)} characters; verifiers refuse more than "
            f"{DEFAULT_MAX_TOKEN_BYTES} by default (WSAUTH_MAX_TOKEN_BYTES)"
        )
    if args.json:
        print(json.dumps({"token": token, "expires_in": args.max_age}))
    else:
        print(token)
    return EXIT_OK


def _read_token(text: str, stdin: IO[str] | None) -> str:
    if text == "-":
        if stdin is None:  # started with standard input closed
            raise _UsageError("standard input is closed: pass the ticket as an argument")
        # A ticket is a few hundred bytes: never slurp an unbounded stream.
        text = stdin.read(_STDIN_LIMIT)
    text = text.strip()
    if text.startswith("{"):
        # The JSON answer of `issue --json` or of the token endpoint.
        try:
            token = json.loads(text).get("token")
        except (ValueError, AttributeError, RecursionError):
            token = None
        if not isinstance(token, str):
            raise _UsageError('input is JSON without a "token" string')
        text = token.strip()
    if not text:
        raise _UsageError("no ticket given (empty input)")
    return text


def _utc(timestamp: int) -> str:
    try:
        moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "out of range"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _failed_check(exc: WSAuthError) -> str:
    """Name the verification step that raised ``exc`` (format is already known good)."""
    if isinstance(exc, TicketTooLarge):
        return "size"
    if isinstance(exc, BadSignature):
        return "signature"
    if isinstance(exc, (TicketExpired, TicketNotYetValid)):
        return "age"
    if isinstance(exc, MalformedTicket):
        return "schema"
    if isinstance(exc, AudienceMismatch):
        return "audience binding"
    if isinstance(exc, IPMismatch):
        return "client IP binding"
    if isinstance(exc, ForbiddenError):
        return "binding"
    return "format"


def _detail(exc: WSAuthError) -> str:
    message = str(exc)
    return exc.reason if message == exc.reason else f"{exc.reason}: {message}"


def _time_status(age: int, max_age: int, leeway: int) -> str:
    if age > max_age + leeway:
        return "expired"
    if age < -leeway:
        return "not yet valid"
    return "within its lifetime"


def _cmd_inspect(args: argparse.Namespace) -> int:
    if not args.verify and (args.audience is not None or args.client_ip is not None):
        raise _UsageError("--audience and --client-ip only apply with --verify")
    # One instant for the report and the verdict, so they cannot disagree.
    now = time.time()
    verifier = None
    if args.verify:
        name, secret = _read_secret()
        try:
            verifier = TicketVerifier(
                secret,
                salt=args.salt,
                max_age=args.max_age,
                leeway=args.leeway,
                clock=lambda: now,
            )
        except ConfigurationError as exc:
            raise _UsageError(f"{name}: {exc}") from None
    token = _read_token(args.token, sys.stdin)
    try:
        payload, issued_at = decode_unverified(token)
    except WSAuthError as exc:
        raise _Failed(f"cannot decode the ticket: {_detail(exc)}") from None

    age = int(now) - issued_at
    expires_at = issued_at + args.max_age + args.leeway
    report: dict[str, Any] = {
        "payload": payload,
        "issued_at": issued_at,
        "issued_at_utc": _utc(issued_at),
        "age": age,
        "expires_at": expires_at,
        "expires_at_utc": _utc(expires_at),
        "status": _time_status(age, args.max_age, args.leeway),
        "verified": None,
    }
    failure: WSAuthError | None = None
    if verifier is not None:
        try:
            verifier.verify(token, audience=args.audience, client_ip=args.client_ip)
        except WSAuthError as exc:
            failure = exc
            report.update(verified=False, check=_failed_check(exc), reason=exc.reason)
        else:
            report["verified"] = True

    if args.json:
        # ASCII: valid JSON whatever the terminal encoding; and strict JSON:
        # a payload's NaN or Infinity (Python's json reads them) becomes text.
        print(json.dumps(_strict_json(report)))
    else:
        _print_report(report, args.max_age, args.leeway)
    if failure is not None:
        raise _Failed(f"ticket rejected: {report['check']} check failed ({_detail(failure)})")
    return EXIT_OK


def _strict_json(value: Any) -> Any:
    """``value`` with every NaN and infinity replaced by its text ("NaN", "Infinity")."""
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strict_json(item) for item in value]
    return value


def _escape(char: str) -> str:
    return json.dumps(char)[1:-1]  # ensure_ascii: a \uXXXX escape (or a pair)


def _display_json(value: Any) -> str:
    """JSON for a terminal: readable letters, but no control, format (such as
    right-to-left override) or unpaired surrogate characters from the payload."""
    text = json.dumps(value, ensure_ascii=False)
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _print_report(report: dict[str, Any], max_age: int, leeway: int) -> None:
    age: int = report["age"]
    when = f"{age} s ago" if age >= 0 else f"{-age} s in the future"
    left = report["expires_at"] - report["issued_at"] - age
    until = f"in {left} s" if left >= 0 else f"{-left} s ago"
    lines = [
        "payload:    "
        + _display_json(report["payload"])
        + ("" if report["verified"] else "  (UNVERIFIED: do not trust)"),
        f"issued at:  {report['issued_at_utc']} ({report['issued_at']}, {when})",
        f"expires at: {report['expires_at_utc']} ({until}; max age {max_age} s "
        f"+ leeway {leeway} s)",
        f"status:     {report['status']} (by the clock of this machine)",
    ]
    if report["verified"] is True:
        lines.append(
            "verify:     OK (size, signature, age, schema, bindings); "
            "the replay check is the server's"
        )
    elif report["verified"] is False:
        lines.append(f"verify:     FAILED at the {report['check']} check: {report['reason']}")
    else:
        lines.append("verify:     not checked (pass --verify with the secret in WSAUTH_SECRET)")
    print("\n".join(lines))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _secret_bytes(text: str) -> int:
    value = int(text)
    if not MIN_KEY_BYTES <= value <= MAX_SECRET_BYTES:
        raise argparse.ArgumentTypeError(f"must be {MIN_KEY_BYTES} to {MAX_SECRET_BYTES}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be 1 to 65535")
    return value


def _subparser(
    sub: Any, name: str, *, help: str, description: str, epilog: str = ""
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"{epilog}\n\n{_EXIT_CODES}".strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Build the ``sanic-wsauth`` argument parser (all subcommands)."""
    parser = _Parser(
        prog=_PROG,
        description="Signed one-time WebSocket tickets for Sanic.",
        epilog=_EXIT_CODES,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the demo server", epilog=_EXIT_CODES)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=_port, default=8000)
    demo.add_argument("--workers", type=_positive_int, default=1)
    demo.add_argument("--max-age", type=_positive_int, default=None, help="ticket lifetime (s)")
    demo.add_argument(
        "--redis",
        default=os.environ.get("WSAUTH_REDIS_URL") or None,
        metavar="URL",
        help="Redis URL for the replay set (env WSAUTH_REDIS_URL)",
    )
    demo.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write Sanic's access log (tickets are redacted)",
    )
    demo.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING"),
        default=None,
        help="level of Sanic's and websockets' loggers in every worker (tickets stay redacted)",
    )
    demo.set_defaults(func=_cmd_demo)

    secret = _subparser(
        sub,
        "secret",
        help="print a new random secret",
        description="Print a new random, URL-safe secret for WSAUTH_SECRET.",
        epilog='Example: export WSAUTH_SECRET="$(sanic-wsauth secret)"',
    )
    secret.add_argument(
        "--bytes",
        type=_secret_bytes,
        default=48,
        metavar="N",
        help=f"random bytes, {MIN_KEY_BYTES} to {MAX_SECRET_BYTES} (default 48), as base64url",
    )
    secret.set_defaults(func=_cmd_secret)

    issue = _subparser(
        sub,
        "issue",
        help="mint a ticket",
        description="Mint a one-time ticket and print it on stdout.\n\n" + _SECRET_HELP,
        epilog=(
            "Example: sanic-wsauth issue --subject alice --audience /chat "
            '--claims \'{"role": "admin"}\''
        ),
    )
    issue.add_argument("--subject", required=True, metavar="S", help="who the ticket is for")
    issue.add_argument("--audience", metavar="A", help="bind the ticket to this route/channel")
    issue.add_argument("--client-ip", metavar="IP", help="bind the ticket to this client address")
    issue.add_argument("--claims", metavar="JSON", help="application claims, a JSON object")
    issue.add_argument(
        "--max-age",
        type=_positive_int,
        default=DEFAULT_MAX_AGE,
        metavar="N",
        help=f"advertised lifetime in seconds for --json (default {DEFAULT_MAX_AGE}); "
        "the verifier's own max age decides",
    )
    issue.add_argument("--salt", default=SALT, help=f"signing salt (default {SALT!r})")
    issue.add_argument(
        "--json", action="store_true", help='print {"token": ..., "expires_in": ...}'
    )
    issue.set_defaults(func=_cmd_issue)

    inspect = _subparser(
        sub,
        "inspect",
        help="decode a ticket; --verify checks it",
        description=(
            "Show a ticket's payload, issue time, age and expiry WITHOUT trusting it.\n"
            "With --verify, check size, signature, age, schema and bindings as the server\n"
            "does (not the replay set) and name the check that fails.\n\n" + _SECRET_HELP
        ),
        epilog="Example: sanic-wsauth issue --subject alice | sanic-wsauth inspect - --verify",
    )
    inspect.add_argument("token", metavar="TOKEN", help="the ticket, or - to read it from stdin")
    inspect.add_argument("--verify", action="store_true", help="check the ticket with the secret")
    inspect.add_argument("--audience", metavar="A", help="with --verify: the route being opened")
    inspect.add_argument(
        "--client-ip", metavar="IP", help="with --verify: the connecting client's address"
    )
    inspect.add_argument(
        "--max-age",
        type=_positive_int,
        default=DEFAULT_MAX_AGE,
        metavar="N",
        help=f"the server's max age in seconds (default {DEFAULT_MAX_AGE})",
    )
    inspect.add_argument(
        "--leeway",
        type=_non_negative_int,
        default=DEFAULT_LEEWAY,
        metavar="N",
        help=f"the server's clock-skew leeway in seconds (default {DEFAULT_LEEWAY})",
    )
    inspect.add_argument("--salt", default=SALT, help=f"signing salt (default {SALT!r})")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.set_defaults(func=_cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 failed, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stdout is None:  # started with standard output closed
        _fail("error: standard output is closed")
        return EXIT_FAILED
    if args.command != "demo" and isinstance(sys.stdout, io.TextIOWrapper):
        # Payloads are untrusted text: never die on an unencodable character.
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        return EXIT_FAILED
    except (_UsageError, ConfigurationError) as exc:
        _fail(f"error: {exc}")
        return EXIT_USAGE
    except _Failed as exc:
        _fail(str(exc))
        return EXIT_FAILED
    except OSError as exc:  # writing the output failed
        # The reader went away (`| head`): exit quietly. Any other failure (a
        # full disk, say) gets one line. Either way, no second error when
        # Python flushes stdout at exit.
        if not isinstance(exc, BrokenPipeError):
            _fail(f"error: cannot write the output: {exc.strerror or exc}")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
