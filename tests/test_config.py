"""Settings: precedence, types, secrets from the environment, start-up errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from sanic import Sanic

from sanic_wsauth import ConfigurationError, TicketVerifier, WeakSecretError, WSAuth
from sanic_wsauth.ext.config import WSAuthConfig, resolve_config

from ._support import (
    free_port,
    handshake,
    new_secret,
    post_token,
    serve,
    stop_process_group,
    wait_for_port,
)


def test_defaults() -> None:
    config = resolve_config({}, {"secret_keys": "s" * 40})
    assert config == WSAuthConfig(secret=("s" * 40,))
    assert config.max_age == 30 and config.leeway == 5
    assert config.token_path == "/authenticate/token" and config.query_param == "token"


def test_app_config_wins_over_options_which_win_over_defaults() -> None:
    config = resolve_config(
        {"WSAUTH_MAX_AGE": 10, "WSAUTH_SECRET": "c" * 40},
        {"secret_keys": "o" * 40, "max_age": 20, "leeway": 2},
    )
    assert config.max_age == 10  # app.config
    assert config.leeway == 2  # option
    assert config.secret == ("c" * 40,)
    assert config.query_param == "token"  # default


def test_env_style_strings_are_converted() -> None:
    config = resolve_config(
        {
            "WSAUTH_SECRET": "k" * 40,
            "WSAUTH_VERIFY_SECRETS": "a" * 40 + ", " + "b" * 40,
            "WSAUTH_ALLOWED_ORIGINS": "https://a.example https://b.example",
            "WSAUTH_BIND_IP": "true",
            "WSAUTH_REDIS_TIMEOUT": "0.5",
            "WSAUTH_MAX_AGE": "45",
        },
        {},
    )
    assert config.verify_secrets == ("a" * 40, "b" * 40)
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert config.bind_ip is True and config.redis_timeout == 0.5 and config.max_age == 45


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("WSAUTH_MAX_AGE", "soon"),
        ("WSAUTH_MAX_AGE", 0),
        ("WSAUTH_LEEWAY", -1),
        ("WSAUTH_BIND_IP", "maybe"),
        ("WSAUTH_TOKEN_PATH", "no-slash"),
        ("WSAUTH_QUERY_PARAM", ""),
        ("WSAUTH_ALLOWED_ORIGINS", 5),
        ("WSAUTH_MAX_AGE", True),
        # What Sanic's env loader makes of "nan", "inf" and "1.9":
        ("WSAUTH_MAX_CONNECTION_AGE", float("nan")),  # would switch the cap off
        ("WSAUTH_MAX_CONNECTION_AGE", float("inf")),  # Infinity in the endpoint's JSON
        ("WSAUTH_REDIS_TIMEOUT", float("inf")),  # no bound on a Redis call
        ("WSAUTH_REDIS_TIMEOUT", float("nan")),
        ("WSAUTH_MAX_AGE", float("inf")),  # int(inf): OverflowError
        ("WSAUTH_MAX_AGE", float("nan")),
        ("WSAUTH_MAX_AGE", 1.9),  # not silently 1
        ("WSAUTH_MAX_AGE", Decimal("1.5")),  # nor from a Decimal or a Fraction
        ("WSAUTH_STORE_MAX_ENTRIES", Fraction(3, 2)),
        ("WSAUTH_LEEWAY", 2.5),
        # Tickets are meant to live seconds: a huge age never expires (and
        # overflows Redis's PX, so every claim failed).
        ("WSAUTH_MAX_AGE", 10**16),
        ("WSAUTH_LEEWAY", 10**9),
        # Paths a fixed route cannot serve (a parameter gave a 500 per request;
        # a query or a dot segment a route nobody requests).
        ("WSAUTH_STATIC_PATH", "/js/<name>"),
        ("WSAUTH_TOKEN_PATH", "/auth/<tenant>"),
        ("WSAUTH_STATIC_PATH", "/js/wsauth.js?v=1"),
        ("WSAUTH_STATIC_PATH", "/js/../wsauth.js"),
        ("WSAUTH_TOKEN_PATH", "/auth/ token"),
        # Prefixes no client can send (a subprotocol is an HTTP token).
        ("WSAUTH_SUBPROTOCOL_PREFIX", "wsauth,ticket."),
        ("WSAUTH_SUBPROTOCOL_PREFIX", "wsauth ticket."),
        ("WSAUTH_SUBPROTOCOL_PREFIX", "wsauth/ticket."),
        # A non-string set in code (no environment variable explains it).
        ("WSAUTH_QUERY_PARAM", True),
        ("WSAUTH_SALT", 2024),
    ],
)
def test_bad_values_are_refused(key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_config({key: value, "WSAUTH_SECRET": "k" * 40}, {})
    assert key in str(info.value)


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_boolean_keeps_its_default(empty: str) -> None:
    """An unset variable in a compose file arrives as "": it must not read as
    false, which would switch the origin check or log redaction off."""
    config = resolve_config(
        {
            "WSAUTH_SECRET": "k" * 40,
            "WSAUTH_CHECK_ORIGIN": empty,
            "WSAUTH_REDACT_LOGS": empty,
            "WSAUTH_REFRESH": empty,
        },
        {},
    )
    assert (config.check_origin, config.redact_logs, config.refresh) == (True, True, False)


def _echo_app(app_name: str, **options: Any) -> tuple[Sanic[Any, Any], WSAuth]:
    """An app (created now, so it reads the environment) with a /ws echo route."""
    from sanic import Request

    app: Sanic[Any, Any] = Sanic(app_name)
    wsauth = WSAuth(app, secret_keys="k" * 40, **options)

    @app.websocket("/ws")
    async def echo(request: Request, ws: Any) -> None:
        await ws.send(await ws.recv())

    return app, wsauth


async def test_an_empty_check_origin_from_the_environment_still_checks(
    app_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANIC_WSAUTH_CHECK_ORIGIN", "")
    app, wsauth = _echo_app(app_name)
    async with serve(app) as srv:
        refused = await handshake(
            f"{srv.ws}/ws?token={wsauth.issue('a')}", origin="https://evil.example", send=None
        )
    assert refused.status == 403


def test_a_second_extension_on_one_app_is_refused(app_name: str) -> None:
    app: Sanic[Any, Any] = Sanic(app_name)
    WSAuth(app, secret_keys="k" * 40)
    with pytest.raises(ConfigurationError, match="already installed"):
        WSAuth(app, secret_keys="k" * 40)


def test_an_unparsable_redis_url_is_a_configuration_error_without_the_password() -> None:
    from sanic_wsauth import RedisReplayStore

    with pytest.raises(ConfigurationError) as info:
        RedisReplayStore("redis://:hunter2-secret@[::1:6379/0")
    assert "hunter2" not in str(info.value)


def test_unknown_option_is_refused_at_construction(app_name: str) -> None:
    with pytest.raises(ConfigurationError, match="max_agee"):
        WSAuth(Sanic(app_name), secret_keys="k" * 40, max_agee=3)


def test_missing_secret_says_how_to_make_one(app_name: str) -> None:
    ext = WSAuth(Sanic(app_name))
    with pytest.raises(WeakSecretError, match="sanic-wsauth secret"):
        ext.configure()


@pytest.mark.parametrize("weak", ["short", "x" * 31])
def test_weak_secret_is_refused(app_name: str, weak: str) -> None:
    ext = WSAuth(Sanic(app_name), secret_keys=weak)
    with pytest.raises(WeakSecretError, match="at least 32"):
        ext.configure()


@pytest.mark.parametrize("setting", ["WSAUTH_SECRET", "WSAUTH_VERIFY_SECRETS"])
def test_a_weak_key_is_named_by_its_setting_and_place(setting: str) -> None:
    good, weak = "k" * 40, "short-old-key"
    settings = {"WSAUTH_SECRET": good, setting: f"{good},{weak}" if "VERIFY" in setting else weak}
    with pytest.raises(WeakSecretError) as info:
        resolve_config(settings, {})
    message = str(info.value)
    position = 2 if "VERIFY" in setting else 1
    assert message.startswith(f"{setting}: key {position} is 13 bytes; at least 32")
    assert weak not in message and good not in message


def test_a_numeric_env_secret_keeps_its_text(
    monkeypatch: pytest.MonkeyPatch, app_name: str
) -> None:
    # Sanic converts SANIC_* env values: a numeric secret arrives as an int,
    # its leading zeros gone. The variable's text is the key.
    secret = "0" + "1234567890" * 4
    monkeypatch.setenv("SANIC_WSAUTH_SECRET", secret)
    app: Sanic[Any, Any] = Sanic(app_name)
    assert isinstance(app.config.WSAUTH_SECRET, int)
    ext = WSAuth(app)
    ext.configure()
    assert ext.config.secret == (secret,)
    assert TicketVerifier(secret).verify(ext.issue("digits")).subject == "digits"


def test_a_numeric_secret_set_in_code_is_refused(app_name: str) -> None:
    app: Sanic[Any, Any] = Sanic(app_name)
    app.config.WSAUTH_SECRET = int("1" * 40)
    with pytest.raises(WeakSecretError, match="must be a string, not int"):
        WSAuth(app).configure()


@pytest.mark.parametrize(
    ("name", "text", "read_as"),
    [
        ("QUERY_PARAM", "t", True),
        ("QUERY_PARAM", "1", 1),
        ("AUDIENCE_PARAM", "off", False),
        ("SALT", "2024", 2024),
        ("SALT", "1e3", 1000.0),
        ("SUBPROTOCOL_PREFIX", "1.", 1.0),
        ("REDIS_PREFIX", "007", 7),
        ("SALT", "nan", math.nan),
    ],
)
def test_text_settings_from_the_environment_keep_their_text(
    monkeypatch: pytest.MonkeyPatch, app_name: str, name: str, text: str, read_as: Any
) -> None:
    """Sanic's environment loader reads "t" as True and "2024" as 2024; a text
    setting takes the variable's own text instead of refusing the value."""
    monkeypatch.setenv(f"SANIC_WSAUTH_{name}", text)
    app: Sanic[Any, Any] = Sanic(app_name)
    value = app.config[f"WSAUTH_{name}"]
    assert type(value) is type(read_as)
    assert value == read_as or (math.isnan(value) and math.isnan(read_as))
    ext = WSAuth(app, secret_keys="k" * 40)
    ext.configure()
    assert getattr(ext.config, name.lower()) == text


def test_an_app_env_prefix_is_found_too(monkeypatch: pytest.MonkeyPatch, app_name: str) -> None:
    monkeypatch.setenv("MYAPP_WSAUTH_SALT", "2024")
    app: Sanic[Any, Any] = Sanic(app_name, env_prefix="MYAPP_")
    assert app.config.WSAUTH_SALT == 2024
    ext = WSAuth(app, secret_keys="k" * 40)
    ext.configure()
    assert ext.config.salt == "2024"
    assert TicketVerifier("k" * 40, salt="2024").verify(ext.issue("a")).subject == "a"


def test_sanics_own_prefix_wins_over_lookalike_variables(
    monkeypatch: pytest.MonkeyPatch, app_name: str
) -> None:
    monkeypatch.setenv("SANIC_WSAUTH_SALT", "2024")
    monkeypatch.setenv("SANIC_OLD_WSAUTH_SALT", "2_024")  # reads as 2024 too
    ext = WSAuth(Sanic(app_name), secret_keys="k" * 40)
    ext.configure()
    assert ext.config.salt == "2024"


def test_two_other_prefixes_reading_alike_are_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, app_name: str
) -> None:
    monkeypatch.setenv("MYAPP_WSAUTH_SALT", "2024")
    monkeypatch.setenv("OTHER_WSAUTH_SALT", "02024")
    app: Sanic[Any, Any] = Sanic(app_name, env_prefix="MYAPP_")
    with pytest.raises(ConfigurationError, match="MYAPP_WSAUTH_SALT, OTHER_WSAUTH_SALT"):
        WSAuth(app, secret_keys="k" * 40)


@pytest.mark.parametrize("name", ["a&b", "tok en", "tök", "auth:token", "$t"])
async def test_any_query_param_name_a_client_can_encode_works(app_name: str, name: str) -> None:
    """Clients percent-encode the name (the JS client does), and the server decodes it."""
    from urllib.parse import quote

    app, wsauth = _echo_app(app_name, query_param=name)
    async with serve(app) as srv:
        opened = await handshake(f"{srv.ws}/ws?{quote(name, safe='')}={wsauth.issue('a')}")
    assert opened.status == 101


def test_bytes_for_a_number_are_refused_as_not_a_number() -> None:
    with pytest.raises(ConfigurationError, match="must be a number"):
        resolve_config({"WSAUTH_SECRET": "k" * 40, "WSAUTH_MAX_AGE": b"30"}, {})


def test_a_value_set_in_code_is_not_replaced_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, app_name: str
) -> None:
    """The variable says "1" but the code set True afterwards: not the variable's
    reading (1), so the code's value stands, and is refused as not text."""
    monkeypatch.setenv("SANIC_WSAUTH_QUERY_PARAM", "1")
    app: Sanic[Any, Any] = Sanic(app_name)
    app.config.WSAUTH_QUERY_PARAM = True
    with pytest.raises(ConfigurationError, match="WSAUTH_QUERY_PARAM"):
        WSAuth(app, secret_keys="k" * 40)


async def test_a_query_param_from_the_environment_opens_a_socket(
    monkeypatch: pytest.MonkeyPatch, app_name: str
) -> None:
    monkeypatch.setenv("SANIC_WSAUTH_QUERY_PARAM", "t")
    app, wsauth = _echo_app(app_name)
    async with serve(app) as srv:
        opened = await handshake(f"{srv.ws}/ws?t={wsauth.issue('a')}")
        missing = await handshake(f"{srv.ws}/ws?token={wsauth.issue('a')}", send=None)
    assert opened.status == 101
    assert (missing.status, json.loads(missing.body)) == (401, {"error": "missing"})


def test_a_nan_cap_from_the_environment_stops_construction(
    monkeypatch: pytest.MonkeyPatch, app_name: str
) -> None:
    monkeypatch.setenv("SANIC_WSAUTH_MAX_CONNECTION_AGE", "nan")
    app: Sanic[Any, Any] = Sanic(app_name)
    assert app.config.WSAUTH_MAX_CONNECTION_AGE != app.config.WSAUTH_MAX_CONNECTION_AGE  # NaN
    with pytest.raises(ConfigurationError, match="finite"):
        WSAuth(app, secret_keys="k" * 40)


@pytest.mark.parametrize("off", [0, 0.0, False, None, ""])
def test_a_connection_age_of_zero_false_or_empty_is_off(off: Any) -> None:
    """Off is the default, so false (``SANIC_WSAUTH_MAX_CONNECTION_AGE=false``
    reaches us as False) may say it too."""
    config = resolve_config({"WSAUTH_MAX_CONNECTION_AGE": off, "WSAUTH_SECRET": "k" * 40}, {})
    assert config.max_connection_age == 0.0


@pytest.mark.parametrize(("text", "age"), [("false", 0.0), ("0", 0.0), ("", 0.0), ("2.5", 2.5)])
def test_a_connection_age_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, app_name: str, text: str, age: float
) -> None:
    monkeypatch.setenv("SANIC_WSAUTH_MAX_CONNECTION_AGE", text)
    wsauth = WSAuth(Sanic(app_name), secret_keys="k" * 40)
    assert wsauth.configure().max_connection_age == age


@pytest.mark.parametrize("value", [True, b"", [], "true", Decimal("sNaN"), 0j])
def test_a_connection_age_of_true_or_not_a_number_is_refused(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="WSAUTH_MAX_CONNECTION_AGE must be a number"):
        resolve_config({"WSAUTH_MAX_CONNECTION_AGE": value, "WSAUTH_SECRET": "k" * 40}, {})


def test_whole_float_values_are_accepted() -> None:
    config = resolve_config({"WSAUTH_MAX_AGE": 45.0, "WSAUTH_SECRET": "k" * 40}, {})
    assert config.max_age == 45 and isinstance(config.max_age, int)
    config = resolve_config({"WSAUTH_LEEWAY": Decimal("3"), "WSAUTH_SECRET": "k" * 40}, {})
    assert config.leeway == 3 and isinstance(config.leeway, int)


def test_a_byte_key_need_not_be_utf8(app_name: str) -> None:
    key = bytes(range(256))[128:192]  # 64 bytes, none of them valid UTF-8 on its own
    ext = WSAuth(Sanic(app_name), secret_keys=key)
    ext.configure()
    ticket = TicketVerifier(key).verify(ext.issue("bytes"))
    assert ticket.subject == "bytes"


def test_env_secret_is_used(monkeypatch: pytest.MonkeyPatch, app_name: str) -> None:
    secret = new_secret()
    monkeypatch.setenv("SANIC_WSAUTH_SECRET", secret)
    ext = WSAuth(Sanic(app_name), secret_keys=new_secret())
    ext.configure()
    TicketVerifier(secret).verify(ext.issue("env"))


def test_state_before_start_is_a_clear_error(app_name: str) -> None:
    ext = WSAuth(Sanic(app_name), secret_keys=new_secret())
    for attribute in ("config", "issuer", "verifier", "store"):
        with pytest.raises(ConfigurationError, match="not"):
            getattr(ext, attribute)


def _run_configured(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SANIC_WSAUTH_")}
    full_env.update(env)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sanic",
            "tests.apps.configured:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-motd",
        ],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "no secret configured"),
        ({"SANIC_WSAUTH_SECRET": "too-short"}, "at least 32 are required"),
        # Sanic reads it as an int; its text is the key, and 20 bytes is too short.
        ({"SANIC_WSAUTH_SECRET": "9" * 20}, "is 20 bytes"),
    ],
)
def test_server_refuses_to_start_without_a_strong_secret(
    env: dict[str, str], expected: str
) -> None:
    proc = _run_configured(env, free_port())
    try:
        output, _ = proc.communicate(timeout=60)
    finally:
        stop_process_group(proc)
    assert proc.returncode != 0
    flat = " ".join(output.replace("\u2590", " ").split())  # undo Sanic's boxed wrapping
    assert expected in flat
    assert "sanic-wsauth secret" in flat  # says how to make one
    assert "Worker ready" not in output


@pytest.mark.slow
def test_server_starts_with_an_env_secret() -> None:
    secret, port = new_secret(), free_port()
    proc = _run_configured({"SANIC_WSAUTH_SECRET": secret}, port)
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        status, body, _ = post_token(f"http://127.0.0.1:{port}")
        assert status == 200
        assert TicketVerifier(secret).verify(body["token"]).subject == "env-user"
    finally:
        stop_process_group(proc)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("WSAUTH_TOKEN_PATH", "/api/ticket"),
        ("WSAUTH_STATIC_PATH", "/assets/wsauth.js"),
        ("WSAUTH_QUERY_PARAM", "ticket"),
        ("WSAUTH_SUBPROTOCOL_PREFIX", "t."),
    ],
)
def test_a_setting_the_constructor_acted_on_cannot_change_later(
    app_name: str, key: str, value: str
) -> None:
    # The routes and the log redactor are made by WSAuth(app): set later,
    # these would silently not take effect (the endpoint would stay put).
    app: Sanic[Any, Any] = Sanic(app_name)
    ext = WSAuth(app, secret_keys="k" * 40, authenticate=lambda r: "u")
    app.config[key] = value
    with pytest.raises(ConfigurationError, match=f"{key} was set after WSAuth"):
        ext.configure()


def test_settings_given_before_the_extension_are_fine(app_name: str) -> None:
    app: Sanic[Any, Any] = Sanic(app_name)
    app.config.WSAUTH_TOKEN_PATH = "/api/ticket"
    ext = WSAuth(app, secret_keys="k" * 40, authenticate=lambda r: "u")
    assert ext.configure().token_path == "/api/ticket"
