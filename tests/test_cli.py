"""The ``sanic-wsauth`` console entry, run for real in a subprocess.

Every test runs ``python -m sanic_wsauth ...`` (the console script is the
same ``main``; one test runs the installed script itself) and checks stdout,
stderr and the exit code. Errors must be one line on stderr, never a
traceback, and never echo the secret or the ticket.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sanic import Request, Sanic

from sanic_wsauth import WSAuth
from sanic_wsauth.exceptions import BadSignature
from sanic_wsauth.tokens import TicketIssuer, TicketVerifier, decode_unverified

from ._support import free_port, handshake, new_secret, serve

SECRET_VARS = ("WSAUTH_SECRET", "SANIC_WSAUTH_SECRET")


def run_cli(
    *args: str,
    secret: str | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    command: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real command line with a clean secret environment."""
    full_env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    if secret is not None:
        full_env["WSAUTH_SECRET"] = secret
    full_env.update(env or {})
    return subprocess.run(
        [*(command or [sys.executable, "-m", "sanic_wsauth"]), *args],
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, *secrets: str) -> str:
    """The command failed with ``code`` and exactly one stderr line; return it."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sanic-wsauth")
    for secret in secrets:
        assert secret not in result.stderr and secret not in result.stdout
    return lines[0]


def mint(secret: str, *, at: float | None = None, **kwargs: Any) -> str:
    clock: Callable[[], float] = time.time if at is None else (lambda: at)
    return TicketIssuer(secret, clock=clock).issue("alice", **kwargs)


# --- help, usage -------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["secret"], ["issue"], ["inspect"], ["demo"]])
def test_help_everywhere_documents_exit_codes(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: sanic-wsauth")
    text = " ".join(result.stdout.split())
    assert "exit codes: 0 success; 1 failed" in text
    assert "2 usage or configuration error" in text


def test_secret_variables_are_named_in_help() -> None:
    for command in ("issue", "inspect"):
        text = " ".join(run_cli(command, "--help").stdout.split())
        assert "WSAUTH_SECRET, else SANIC_WSAUTH_SECRET" in text


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["bogus"],
        ["issue"],
        ["secret", "--bytes", "16"],
        ["secret", "--bytes", "99999999999999999999"],
        ["inspect"],
        ["inspect", "t", "--x"],
        ["demo", "--port", "99999"],
        ["demo", "--port", "0"],
    ],
)
def test_usage_errors_exit_2_on_one_line(args: list[str]) -> None:
    line = assert_clean_error(run_cli(*args), 2)
    assert line.startswith("sanic-wsauth") and "error:" in line and "(see --help)" in line


def test_console_script_is_installed_and_runs_main() -> None:
    script = Path(sys.executable).with_name("sanic-wsauth")
    assert script.exists(), f"console script missing at {script}"
    result = run_cli("--help", command=[str(script)])
    assert result.returncode == 0 and "inspect" in result.stdout
    result = run_cli("bogus", command=[str(script)])
    assert_clean_error(result, 2)


# --- secret ------------------------------------------------------------------


def test_secret_prints_a_fresh_strong_url_safe_secret() -> None:
    first, second = (run_cli("secret") for _ in range(2))
    assert first.returncode == second.returncode == 0
    assert first.stderr == ""
    values = [first.stdout.strip(), second.stdout.strip()]
    assert values[0] != values[1]
    for value in values:
        assert re.fullmatch(r"[A-Za-z0-9_-]{64}", value), value  # 48 random bytes
        TicketIssuer(value)  # strong enough for the core
    longer = run_cli("secret", "--bytes", "64").stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{86}", longer)


# --- issue -------------------------------------------------------------------


def test_issue_mints_a_ticket_the_verifier_accepts(secret: str) -> None:
    result = run_cli(
        "issue",
        "--subject", "alice",
        "--audience", "/chat",
        "--client-ip", "[::1]",
        "--claims", '{"role": "admin", "name": "Zo\u00eb"}',
        secret=secret,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert secret not in result.stdout
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    ticket = TicketVerifier(secret).verify(token, audience="/chat", client_ip="::1")
    assert ticket.subject == "alice"
    assert ticket.audience == "/chat"
    assert ticket.client_ip == "::1"
    assert dict(ticket.claims) == {"role": "admin", "name": "Zo\u00eb"}
    assert abs(ticket.issued_at - time.time()) < 60


def test_issue_json_reports_expires_in(secret: str) -> None:
    result = run_cli("issue", "--subject", "bob", "--json", "--max-age", "12", secret=secret)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert set(body) == {"token", "expires_in"} and body["expires_in"] == 12
    assert TicketVerifier(secret, max_age=12).verify(body["token"]).subject == "bob"


def test_secret_and_salt_bytes_that_are_not_utf8_work_both_ways() -> None:
    # The environment and the command line keep such bytes as lone surrogates;
    # issue and inspect --verify must agree on them, with no traceback.
    secret = "k" * 40 + "\udcff"  # the byte 0xff
    issued = run_cli("issue", "--subject", "bob", "--salt", "s\udcfe", secret=secret)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    verified = run_cli("inspect", token, "--verify", "--salt", "s\udcfe", secret=secret)
    assert verified.returncode == 0, verified.stderr
    refused = run_cli("inspect", token, "--verify", "--salt", "s\udcfd", secret=secret)
    assert_clean_error(refused, 1, token)


def test_issue_salt_must_match_the_verifier(secret: str) -> None:
    token = run_cli("issue", "--subject", "a", "--salt", "other", secret=secret).stdout.strip()
    assert TicketVerifier(secret, salt="other").verify(token).subject == "a"
    with pytest.raises(BadSignature):
        TicketVerifier(secret).verify(token)


def test_issue_reads_wsauth_secret_first_then_sanic_wsauth_secret() -> None:
    primary, fallback = new_secret(), new_secret()
    both = run_cli(
        "issue", "--subject", "a", env={"WSAUTH_SECRET": primary, "SANIC_WSAUTH_SECRET": fallback}
    )
    assert both.returncode == 0, both.stderr
    assert TicketVerifier(primary).verify(both.stdout.strip()).subject == "a"
    with pytest.raises(BadSignature):
        TicketVerifier(fallback).verify(both.stdout.strip())

    only = run_cli("issue", "--subject", "b", env={"SANIC_WSAUTH_SECRET": fallback})
    assert only.returncode == 0, only.stderr
    assert TicketVerifier(fallback).verify(only.stdout.strip()).subject == "b"

    # An empty WSAUTH_SECRET counts as unset.
    empty = run_cli(
        "issue", "--subject", "c", env={"WSAUTH_SECRET": "", "SANIC_WSAUTH_SECRET": fallback}
    )
    assert TicketVerifier(fallback).verify(empty.stdout.strip()).subject == "c"


WEAK = "not-long-enough-secret"


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({}, [], "no secret: set WSAUTH_SECRET"),
        ({"WSAUTH_SECRET": WEAK}, [], "WSAUTH_SECRET: secret key is 22 bytes"),
        ({"SANIC_WSAUTH_SECRET": WEAK}, [], "SANIC_WSAUTH_SECRET: secret key is 22 bytes"),
        ({"WSAUTH_SECRET": "S" * 48}, ["--claims", "{x"], "--claims is not valid JSON"),
        ({"WSAUTH_SECRET": "S" * 48}, ["--claims", "[1]"], "--claims must be a JSON object"),
        ({"WSAUTH_SECRET": "S" * 48}, ["--claims", '{"a": NaN}'], "NaN is not valid JSON"),
        ({"WSAUTH_SECRET": "S" * 48}, ["--client-ip", "nope"], "does not appear to be an IPv4"),
        ({"WSAUTH_SECRET": "S" * 48}, ["--audience", ""], "audience must be a string"),
        ({"WSAUTH_SECRET": "S" * 48}, ["--max-age", "0"], "must be at least 1"),
    ],
)
def test_issue_configuration_errors_exit_2(
    env: dict[str, str], args: list[str], expected: str
) -> None:
    result = run_cli("issue", "--subject", "alice", *args, env=env)
    line = assert_clean_error(result, 2, *env.values())
    assert expected in line
    assert result.stdout == ""


@pytest.mark.parametrize("subject", ["", "x" * 257])
def test_issue_refuses_bad_subjects(subject: str) -> None:
    line = assert_clean_error(run_cli("issue", "--subject", subject, secret="S" * 48), 2)
    assert "subject must be a string of 1 to 256 characters" in line


# --- inspect -----------------------------------------------------------------


def test_inspect_shows_payload_and_times_without_a_secret(secret: str) -> None:
    issued = int(time.time()) - 100
    token = mint(secret, at=issued, audience="/chat", claims={"role": "admin"})
    payload, _ = decode_unverified(token)

    human = run_cli("inspect", token)  # no secret in the environment
    assert human.returncode == 0, human.stderr
    assert human.stderr == ""
    lines = dict(line.split(":", 1) for line in human.stdout.splitlines())
    assert json.loads(lines["payload"].split("  (")[0]) == payload
    assert "UNVERIFIED" in lines["payload"]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued))
    assert lines["issued at"].strip().startswith(f"{stamp} ({issued}, ")
    assert lines["status"].strip().startswith("expired")
    assert lines["verify"].strip().startswith("not checked")
    assert token not in human.stdout

    report = json.loads(run_cli("inspect", token, "--json", "--max-age", "60").stdout)
    assert report["payload"] == payload
    assert report["issued_at"] == issued
    assert 100 <= report["age"] < 160
    assert report["expires_at"] == issued + 60 + 5
    assert report["status"] == "expired"
    assert report["verified"] is None

    fresh = json.loads(run_cli("inspect", mint(secret), "--json").stdout)
    assert fresh["status"] == "within its lifetime" and -5 <= fresh["age"] < 60


def test_inspect_reads_stdin_plain_or_json(secret: str) -> None:
    token = mint(secret)
    plain = run_cli("inspect", "-", "--json", stdin=f"  {token}\n")
    assert plain.returncode == 0, plain.stderr
    wrapped = run_cli("inspect", "-", "--json", stdin=json.dumps({"token": token}))
    assert wrapped.returncode == 0, wrapped.stderr
    assert json.loads(plain.stdout) | {"age": 0} == json.loads(wrapped.stdout) | {"age": 0}
    assert json.loads(plain.stdout)["payload"]["sub"] == "alice"

    assert "no ticket given" in assert_clean_error(run_cli("inspect", "-", stdin=""), 2)
    line = assert_clean_error(run_cli("inspect", "-", stdin='{"x": 1}'), 2)
    assert 'without a "token" string' in line


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("garbage", "malformed"),
        ("a.b", "malformed"),
        ("bm90IGpzb24.aVWJAA.AAAA", "malformed: bad payload"),
        ("x" * 5000 + ".a.b", "too_large"),
    ],
)
def test_inspect_undecodable_ticket_exits_1(token: str, reason: str) -> None:
    line = assert_clean_error(run_cli("inspect", token), 1, token)
    assert line == f"sanic-wsauth: cannot decode the ticket: {reason}"


def test_inspect_verify_accepts_a_good_ticket(secret: str) -> None:
    token = mint(secret, audience="/chat", client_ip="10.0.0.7")
    result = run_cli(
        "inspect", token, "--verify", "--audience", "/chat", "--client-ip", "10.0.0.7",
        secret=secret,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "verify:     OK" in result.stdout
    assert "UNVERIFIED" not in result.stdout
    assert secret not in result.stdout and token not in result.stdout
    report = json.loads(
        run_cli(
            "inspect", token, "--verify", "--json", "--audience", "/chat",
            "--client-ip", "10.0.0.7", secret=secret,
        ).stdout
    )  # fmt: skip
    assert report["verified"] is True and "reason" not in report


def _bad_jti(secret: str) -> str:
    return TicketIssuer(secret).sign_payload({"jti": "NOT-HEX", "sub": "alice"})


@pytest.mark.parametrize(
    ("make", "verify_args", "check", "reason"),
    [
        (lambda s: mint(new_secret()), [], "signature", "bad_signature"),
        (lambda s: mint(s), ["--salt", "another-salt"], "signature", "bad_signature"),
        (lambda s: mint(s, at=time.time() - 100), [], "age", "expired"),
        (lambda s: mint(s, at=time.time() - 100), ["--max-age", "300"], None, None),
        (lambda s: mint(s, at=time.time() + 100), [], "age", "not_yet_valid"),
        (lambda s: mint(s, at=time.time() + 100), ["--leeway", "200"], None, None),
        (_bad_jti, [], "schema", "malformed"),
        (lambda s: mint(s, audience="/a"), ["--audience", "/b"], "audience binding",
         "audience_mismatch"),
        (lambda s: mint(s, audience="/a"), [], "audience binding", "audience_mismatch"),
        # A command-line byte that is not UTF-8 reaches Python as a lone surrogate.
        (lambda s: mint(s, audience="/a"), ["--audience", "/a\udcff"], "audience binding",
         "audience_mismatch"),
        (lambda s: mint(s, client_ip="10.0.0.1"), ["--client-ip", "10.0.0.2"],
         "client IP binding", "ip_mismatch"),
    ],
)  # fmt: skip
def test_inspect_verify_names_the_failing_check(
    secret: str,
    make: Callable[[str], str],
    verify_args: list[str],
    check: str | None,
    reason: str | None,
) -> None:
    token = make(secret)
    human = run_cli("inspect", token, "--verify", *verify_args, secret=secret)
    report = json.loads(
        run_cli("inspect", token, "--verify", "--json", *verify_args, secret=secret).stdout
    )
    if check is None:
        assert human.returncode == 0, human.stderr
        assert report["verified"] is True
        return
    line = assert_clean_error(human, 1, secret, token)
    assert line.startswith(f"sanic-wsauth: ticket rejected: {check} check failed ({reason}")
    assert f"verify:     FAILED at the {check} check: {reason}" in human.stdout
    assert report["verified"] is False
    assert report["check"] == check and report["reason"] == reason


def test_inspect_verify_configuration_errors_exit_2(secret: str) -> None:
    token = mint(secret)
    line = assert_clean_error(run_cli("inspect", token, "--verify"), 2)
    assert "no secret" in line
    line = assert_clean_error(run_cli("inspect", token, "--verify", secret=WEAK), 2, WEAK)
    assert "WSAUTH_SECRET: secret key is 22 bytes" in line
    line = assert_clean_error(run_cli("inspect", token, "--audience", "/a"), 2)
    assert "only apply with --verify" in line


# --- a ticket from `issue` opens a real websocket ------------------------------


def _echo_app(name: str, secret: str) -> Sanic[Any, Any]:
    app: Sanic[Any, Any] = Sanic(name)
    app.config.WEBSOCKET_PING_INTERVAL = None
    WSAuth(app, secret_keys=secret)  # no endpoint: tickets come from the CLI

    @app.websocket("/ws")  # type: ignore[untyped-decorator]  # Sanic is untyped here
    async def echo(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(f"{request.ctx.ticket.subject}: {message}")

    return app


async def _issue(*args: str, secret: str) -> str:
    result = await asyncio.to_thread(run_cli, "issue", *args, secret=secret)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def test_issued_ticket_opens_a_websocket_once(secret: str, app_name: str) -> None:
    async with serve(_echo_app(app_name, secret)) as srv:
        token = await _issue("--subject", "carol", secret=secret)
        opened = await handshake(f"{srv.ws}/ws?token={token}")
        assert opened.status == 101 and opened.reply == "carol: ping"
        again = await handshake(f"{srv.ws}/ws?token={token}")
        assert again.status == 401 and json.loads(again.body) == {"error": "replayed"}

        bound = await _issue(
            "--subject", "dave", "--audience", "/ws", "--client-ip", "127.0.0.1", secret=secret
        )
        opened = await handshake(f"{srv.ws}/ws?token={bound}")
        assert opened.status == 101 and opened.reply == "dave: ping"

        elsewhere = await _issue("--subject", "erin", "--audience", "/other", secret=secret)
        refused = await handshake(f"{srv.ws}/ws?token={elsewhere}")
        assert refused.status == 403 and json.loads(refused.body) == {"error": "audience_mismatch"}

        foreign = await _issue("--subject", "mallory", secret=new_secret())
        refused = await handshake(f"{srv.ws}/ws?token={foreign}")
        assert refused.status == 401 and json.loads(refused.body) == {"error": "bad_signature"}


def test_inspect_prints_hostile_payload_text_safely(secret: str) -> None:
    # A lone surrogate cannot be UTF-8: another issuer can still send it JSON-escaped.
    import hashlib

    from itsdangerous import URLSafeTimedSerializer

    escaping = URLSafeTimedSerializer(
        [secret],
        salt="sanic-wsauth",
        serializer_kwargs={"ensure_ascii": True},
        signer_kwargs={"digest_method": hashlib.sha256, "key_derivation": "hmac"},
    )
    token = escaping.dumps(
        {"jti": "ab" * 16, "sub": "\udcff\x1b[2J\u202e", "ext": {"name": "Zo\u00eb"}}
    )
    for encoding in ("utf-8", "ascii"):
        env = {"PYTHONIOENCODING": encoding}
        human = run_cli("inspect", token, env=env)
        assert human.returncode == 0 and human.stderr == "", human.stderr
        assert "\x1b" not in human.stdout and "\u202e" not in human.stdout
        report = run_cli("inspect", token, "--json", env=env)
        assert report.returncode == 0, report.stderr
        assert report.stdout.isascii()
        assert json.loads(report.stdout)["payload"]["sub"] == "\udcff\x1b[2J\u202e"


def test_inspect_json_is_strict_json_even_for_a_nan_payload(secret: str) -> None:
    # Python's json writes and reads NaN and Infinity; strict parsers do not.
    token = TicketIssuer(secret).sign_payload(
        {"jti": "ab" * 16, "sub": "alice", "ext": {"n": float("nan"), "big": [float("-inf")]}}
    )
    report = run_cli("inspect", token, "--json")
    assert report.returncode == 0, report.stderr

    def strict(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    payload = json.loads(report.stdout, parse_constant=strict)["payload"]
    assert payload["ext"] == {"n": "NaN", "big": ["-Infinity"]}


def _run_with_fds(args: list[str], *, stdin: Any, stdout: Any, env: dict[str, str]) -> Any:
    full_env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "sanic_wsauth", *args],
        env=full_env,
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_an_output_that_cannot_be_written_is_one_line(secret: str) -> None:
    with open("/dev/full", "w") as full:  # every write fails: ENOSPC
        for args in (
            ["secret"],
            ["issue", "--subject", "alice"],
            ["inspect", mint(secret), "--json"],
        ):
            result = _run_with_fds(
                args, stdin=subprocess.DEVNULL, stdout=full, env={"WSAUTH_SECRET": secret}
            )
            assert result.returncode == 1, (args, result.stderr)
            assert result.stderr.splitlines() == [
                "sanic-wsauth: error: cannot write the output: No space left on device"
            ], args


def test_closed_standard_streams_are_one_line(secret: str) -> None:
    closed_stdin = subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" -m sanic_wsauth inspect - <&-'],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert closed_stdin.returncode == 2
    assert closed_stdin.stderr.splitlines() == [
        "sanic-wsauth: error: standard input is closed: pass the ticket as an argument"
    ]
    closed_stdout = subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" -m sanic_wsauth secret >&-'],
        capture_output=False,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )
    assert closed_stdout.returncode == 1
    assert closed_stdout.stderr.splitlines() == ["sanic-wsauth: error: standard output is closed"]


@pytest.mark.parametrize("host", ["ä" * 70, "\udcff"], ids=["idna-too-long", "not-utf8"])
def test_a_host_that_is_no_name_is_one_line(secret: str, host: str) -> None:
    env = {"WSAUTH_SECRET": secret, "WSAUTH_DEMO_API_KEY": "k"}
    result = run_cli("demo", "--host", host, "--port", str(free_port()), env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith(": not a host name or address")
