"""The demo contract, run as users run it: `python -m sanic_wsauth demo --workers 2`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ._support import handshake, post_token, run_demo
from .redis_support import count_keys

pytestmark = pytest.mark.slow


async def test_two_workers_issue_and_echo() -> None:
    with run_demo(workers=2, env={"WSAUTH_DEMO_API_KEY": "demo-key-1"}) as (_, port):
        base = f"http://127.0.0.1:{port}"
        status, body, headers = await asyncio.to_thread(post_token, base, api_key="wrong")
        assert status == 401 and body == {"error": "unauthenticated"}
        # Header bytes that are not UTF-8 (Sanic keeps them as lone surrogates):
        # a wrong key like any other, 401, not a failed authenticate() and 503.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /authenticate/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer \xff\xfe\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        assert head.split(b" ", 2)[1] == b"401", head
        replies = []
        for _ in range(6):  # several connections, spread over both workers
            status, body, headers = await asyncio.to_thread(post_token, base, api_key="demo-key-1")
            assert status == 200 and body["expires_in"] == 30
            assert headers["Cache-Control"] == "no-store"
            result = await handshake(f"ws://127.0.0.1:{port}/ws?token={body['token']}", send="hi")
            assert result.status == 101
            replies.append(result.reply)
        assert replies == ["demo: hi"] * 6
        refused = await handshake(f"ws://127.0.0.1:{port}/ws?token=nope")
        assert refused.status == 401


async def test_generated_key_and_secret_are_announced() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("WSAUTH_SECRET", "WSAUTH_DEMO_API_KEY")}
    with tempfile.TemporaryDirectory() as tmp:
        log_path = str(Path(tmp) / "demo.log")
        with run_demo(
            workers=2, env={"WSAUTH_SECRET": "", "WSAUTH_DEMO_API_KEY": ""}, log_path=log_path
        ) as (_, port):
            output = Path(log_path).read_text()
            match = re.search(r"demo API key: (\S+)", output)
            assert match, output
            assert "WSAUTH_SECRET is not set" in output
            assert "several workers" in output.lower() or "Several workers" in output
            status, body, _ = await asyncio.to_thread(
                post_token, f"http://127.0.0.1:{port}", api_key=match.group(1)
            )
            assert status == 200
            # Both workers share the generated secret: every ticket opens a socket.
            for _ in range(4):
                status, body, _ = await asyncio.to_thread(
                    post_token, f"http://127.0.0.1:{port}", api_key=match.group(1)
                )
                result = await handshake(f"ws://127.0.0.1:{port}/ws?token={body['token']}")
                assert result.status == 101
    del env


def test_demo_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sanic_wsauth", "demo", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for flag in ("--host", "--port", "--workers", "--max-age", "--redis"):
        assert flag in out.stdout


async def test_max_age_flag() -> None:
    with run_demo(args=["--max-age", "7"], env={"WSAUTH_DEMO_API_KEY": "k7"}) as (_, port):
        status, body, _ = await asyncio.to_thread(
            post_token, f"http://127.0.0.1:{port}", api_key="k7"
        )
        assert status == 200 and body["expires_in"] == 7


@pytest.mark.parametrize(("secret", "expected"), [("short", "at least 32"), ("   ", "3 bytes")])
def test_weak_secret_stops_the_demo_with_one_line(secret: str, expected: str) -> None:
    env = {**os.environ, "WSAUTH_SECRET": secret, "WSAUTH_DEMO_API_KEY": "k"}
    out = subprocess.run(
        [sys.executable, "-m", "sanic_wsauth", "demo", "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert expected in out.stderr and "sanic-wsauth secret" in out.stderr
    assert out.stderr.startswith("sanic-wsauth: error: "), out.stderr  # as the CLI's others


def _demo_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a demo that must stop by itself; if it serves instead, stop it and
    its workers (its own process group) and fail."""
    full = {**os.environ, "WSAUTH_DEMO_API_KEY": "k", **env}
    cmd = [sys.executable, "-m", "sanic_wsauth", "demo", *args]
    proc = subprocess.Popen(
        cmd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"the demo did not stop: {cmd}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_a_port_in_use_stops_the_demo_with_one_line(secret: str) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        out = _demo_run("--port", str(port), env={"WSAUTH_SECRET": secret})
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines() == [
        f"sanic-wsauth: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_a_bad_redis_url_stops_the_demo_with_one_line(secret: str) -> None:
    out = _demo_run("--redis", "http://127.0.0.1:6379", env={"WSAUTH_SECRET": secret})
    assert out.returncode == 2
    [line] = out.stderr.splitlines()
    assert line.startswith("sanic-wsauth: error: ") and "redis" in line.lower()


@pytest.mark.parametrize("value", ["abc", "1.5"])
def test_a_bad_demo_max_age_stops_the_demo_with_one_line(secret: str, value: str) -> None:
    out = _demo_run(env={"WSAUTH_SECRET": secret, "WSAUTH_MAX_AGE": value})
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1:] == [
        "sanic-wsauth: error: WSAUTH_MAX_AGE must be a whole number of seconds"
    ]
    assert "Traceback" not in out.stderr


async def test_a_sanic_prefixed_secret_is_used_and_not_reported_missing(secret: str) -> None:
    from sanic_wsauth import TicketIssuer

    with tempfile.TemporaryDirectory() as tmp:
        log_path = str(Path(tmp) / "demo.log")
        env = {"WSAUTH_SECRET": "", "SANIC_WSAUTH_SECRET": secret}
        with run_demo(env=env, log_path=log_path) as (_, port):
            ticket = TicketIssuer(secret).issue("cli-user")
            result = await handshake(f"ws://127.0.0.1:{port}/ws?token={ticket}")
            assert result.status == 101 and result.reply == "cli-user: ping"
        assert "not set" not in Path(log_path).read_text()


@pytest.mark.parametrize("set_to", ["redis://127.0.0.1:1/0", ""], ids=["elsewhere", "empty"])
async def test_flags_win_over_sanic_prefixed_variables(
    redis_url: str, key_prefix: str, set_to: str
) -> None:
    env = {
        "WSAUTH_DEMO_API_KEY": "k",
        "SANIC_WSAUTH_REDIS_PREFIX": key_prefix,
        "SANIC_WSAUTH_MAX_AGE": "30",
        "SANIC_WSAUTH_REDIS_URL": set_to,  # nothing listens on port 1; empty: memory
    }
    with run_demo(args=["--max-age", "7", "--redis", redis_url], env=env) as (_, port):
        status, body, _ = await asyncio.to_thread(
            post_token, f"http://127.0.0.1:{port}", api_key="k"
        )
        assert status == 200 and body["expires_in"] == 7
        result = await handshake(f"ws://127.0.0.1:{port}/ws?token={body['token']}")
        assert result.status == 101
    assert len(count_keys(redis_url, key_prefix)) == 1  # claimed in the flag's Redis


def test_an_unknown_host_stops_the_demo_with_one_line(secret: str) -> None:
    out = _demo_run("--host", "no-such-host.invalid", env={"WSAUTH_SECRET": secret})
    assert out.returncode == 1, out.stderr
    [line] = out.stderr.splitlines()
    assert line.startswith("sanic-wsauth: error: cannot listen on no-such-host.invalid:8000: ")
    assert "Unknown error" not in line
