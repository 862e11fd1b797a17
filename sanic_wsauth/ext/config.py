"""Settings of the Sanic extension: constructor options and ``WSAUTH_*`` keys.

Every option ``name`` has the config key ``WSAUTH_<NAME>`` (the secret is
``WSAUTH_SECRET``). A value already in ``app.config`` (set in code, or from the
environment as ``SANIC_WSAUTH_<NAME>``) wins over the constructor's option,
which wins over the default.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from sanic.utils import str_to_bool

from ..exceptions import ConfigurationError, WeakSecretError
from ..tokens import (
    _KEYGEN_HINT,
    DEFAULT_LEEWAY,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_TOKEN_BYTES,
    MIN_KEY_BYTES,
    SALT,
)

__all__ = ["CONFIG_PREFIX", "WSAuthConfig", "config_key", "resolve_config"]

CONFIG_PREFIX = "WSAUTH_"


@dataclass(frozen=True)
class WSAuthConfig:
    """Resolved settings; see the README's configuration table."""

    secret: tuple[str | bytes, ...] = ()
    verify_secrets: tuple[str | bytes, ...] = ()
    salt: str = SALT
    max_age: int = DEFAULT_MAX_AGE
    leeway: int = DEFAULT_LEEWAY
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    token_path: str | None = "/authenticate/token"  # noqa: S105 - a URL path
    query_param: str = "token"
    subprotocol_prefix: str = "wsauth.ticket."
    audience_param: str = "audience"
    require_audience: bool = False
    check_origin: bool = True
    allowed_origins: tuple[str, ...] = ()
    allow_missing_origin: bool = True
    bind_ip: bool = False
    max_connection_age: float = 0.0
    refresh: bool = False
    static_path: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "wsauth:jti:"
    redis_timeout: float = 0.25
    store_max_entries: int = 1_000_000
    redact_logs: bool = True


_OPTION_FOR_KEY = {"secret": "secret_keys"}
_NAMES = tuple(f.name for f in fields(WSAuthConfig))
OPTION_NAMES = frozenset(_OPTION_FOR_KEY.get(n, n) for n in _NAMES)


def config_key(name: str) -> str:
    """Return the ``app.config`` key of setting ``name``."""
    return CONFIG_PREFIX + name.upper()


#: A value that means "not set": the setting keeps its default.
_UNSET: Any = object()
#: Upper bounds on the ticket's lifetime settings (seconds): a ticket is meant
#: to live seconds; a huge one would never expire (and overflow Redis's PX).
_MAX_AGE_LIMIT = 86_400
_LEEWAY_LIMIT = 3_600


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{config_key(name)} must be a boolean, got {value!r}")


def _as_number(
    name: str,
    value: Any,
    kind: type[int] | type[float],
    minimum: float,
    maximum: float = math.inf,
) -> Any:
    """A finite number from ``minimum`` to ``maximum``; for an ``int`` setting, a whole one.

    Sanic's environment loader turns ``nan``, ``inf`` and ``1.5`` into floats:
    NaN would switch a ``> 0`` check off, infinity would lift a bound (and
    write ``Infinity`` into JSON), and ``int(1.9)`` would silently be 1.
    """
    if isinstance(value, (bool, bytes, bytearray)):
        raise ConfigurationError(f"{config_key(name)} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigurationError(f"{config_key(name)} must be a finite number, got {value!r}")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ConfigurationError(f"{config_key(name)} must be a whole number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigurationError(f"{config_key(name)} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigurationError(f"{config_key(name)} must be a finite number, got {value!r}")
    if kind is int and not isinstance(value, str) and number != value:
        # Decimal("1.5") or Fraction(3, 2): int() would silently drop the fraction.
        raise ConfigurationError(f"{config_key(name)} must be a whole number, got {value!r}")
    if number < minimum:
        raise ConfigurationError(f"{config_key(name)} must be at least {minimum}")
    if number > maximum:
        raise ConfigurationError(f"{config_key(name)} must be at most {maximum} (seconds)")
    return number


def _as_list(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: Iterable[Any] = value.replace(",", " ").split()
    elif isinstance(value, Iterable):
        items = value
    else:
        raise ConfigurationError(f"{config_key(name)} must be a list of strings")
    out = tuple(items)
    if not all(isinstance(item, str) for item in out):
        raise ConfigurationError(f"{config_key(name)} must be a list of strings")
    return out


def _as_secrets(name: str, value: Any) -> tuple[str | bytes, ...]:
    if value is None:
        return ()
    if isinstance(value, str) and name == "verify_secrets":
        # From the environment: a list separated by commas or white space.
        value = value.replace(",", " ").split()
    elif isinstance(value, (str, bytes)):
        value = [value]
    if not isinstance(value, Iterable):
        # Sanic turns a numeric SANIC_WSAUTH_SECRET into an int.
        raise WeakSecretError(
            f"{config_key(name)} must be a string, not {type(value).__name__}; {_KEYGEN_HINT}"
        )
    keys: list[str | bytes] = []
    for position, key in enumerate(value, 1):
        # Bytes stay bytes: any byte string is a key, UTF-8 or not.
        if not isinstance(key, (str, bytes)):
            raise WeakSecretError(
                f"{config_key(name)} must be a string, not {type(key).__name__}; {_KEYGEN_HINT}"
            )
        try:
            size = len(key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:  # a lone surrogate: the token core says so
            size = MIN_KEY_BYTES
        if size < MIN_KEY_BYTES:
            # Named here, with its place in the list, never echoed.
            raise WeakSecretError(
                f"{config_key(name)}: key {position} is {size} bytes; at least "
                f"{MIN_KEY_BYTES} are required; {_KEYGEN_HINT}"
            )
        keys.append(key)
    return tuple(keys)


#: What a fixed route path may not hold: route parameters (``<name>``), a
#: query or fragment, white space, or dot segments (a browser never asks for them).
_NOT_A_PATH = re.compile(r"[<>?#\s]|/\.\.?(?:/|$)")


def _as_path(name: str, value: Any) -> str | None:
    if value is None or value is False or value == "":
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigurationError(f"{config_key(name)} must be a path starting with '/'")
    if _NOT_A_PATH.search(value):
        raise ConfigurationError(
            f"{config_key(name)} must be a plain path: no <parameters>, query, fragment, "
            "white space or . and .. segments"
        )
    return value


def _as_str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{config_key(name)} must be a non-empty string")
    return value


#: RFC 9110 token characters: a subprotocol is a token.
_TOKEN_CHARS = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")


def _as_token(name: str, value: Any) -> str:
    # A browser refuses any other subprotocol, and the server splits the
    # header at commas. (Query and body parameter names may be anything:
    # clients percent-encode them, and the server decodes.)
    text = _as_str(name, value)
    if _TOKEN_CHARS.fullmatch(text) is None:
        raise ConfigurationError(
            f"{config_key(name)} must be made of the characters of an HTTP token (no "
            "comma, space, slash or quote): a client cannot send anything else in "
            "Sec-WebSocket-Protocol"
        )
    return text


def _convert(name: str, value: Any) -> Any:
    if name in ("secret", "verify_secrets"):
        return _as_secrets(name, value)
    if name == "allowed_origins":
        return _as_list(name, value)
    if name in ("token_path", "static_path"):
        return _as_path(name, value)
    if name == "redis_url":
        return None if value in (None, "") else _as_str(name, value)
    if name == "subprotocol_prefix":
        return _as_token(name, value)
    if name == "max_age":
        return _as_number(name, value, int, 1, _MAX_AGE_LIMIT)
    if name in ("max_token_bytes", "store_max_entries"):
        return _as_number(name, value, int, 1)
    if name == "leeway":
        return _as_number(name, value, int, 0, _LEEWAY_LIMIT)
    if name == "redis_timeout":
        return _as_number(name, value, float, 0.001)
    if name == "max_connection_age":
        # Off is the default, so None, empty and false may say it too (Sanic
        # reads SANIC_WSAUTH_MAX_CONNECTION_AGE=false as False); true is refused.
        # By identity, not ==: Decimal("sNaN") == 0 raises, 0j == 0 holds.
        off = value is None or value is False or (isinstance(value, str) and not value)
        return _as_number(name, 0 if off else value, float, 0)
    if name in (
        "require_audience",
        "check_origin",
        "allow_missing_origin",
        "bind_ip",
        "refresh",
        "redact_logs",
    ):
        if isinstance(value, str) and not value.strip():
            # Empty (an unset variable in a compose file, say): the default,
            # not false, which would switch a defence such as CHECK_ORIGIN off.
            return _UNSET
        return _as_bool(name, value)
    return _as_str(name, value)


#: Text settings that Sanic's environment loader may have read as a number or
#: a bool (``SANIC_WSAUTH_QUERY_PARAM=t`` becomes True, ``..._SALT=2024`` 2024).
_TEXT_SETTINGS = frozenset(
    {
        "secret",
        "verify_secrets",
        "salt",
        "query_param",
        "subprotocol_prefix",
        "audience_param",
        "redis_url",
        "redis_prefix",
    }
)


def _sanic_reading(raw: str) -> Any:
    """What Sanic's environment loader makes of ``raw`` (int, float, bool, else str)."""
    for convert in (int, float, str_to_bool):
        try:
            return convert(raw)
        except ValueError:
            pass
    return raw


def _environment_text(key: str, value: Any) -> Any:
    """The text of the environment variable Sanic read ``value`` from, if any.

    A text setting given as ``<PREFIX>WSAUTH_<NAME>`` in the environment that
    Sanic turned into a number or a bool comes back as the text that was set:
    ``SANIC_WSAUTH_<NAME>`` first (Sanic's default prefix); otherwise the one
    variable of another prefix (the app's ``env_prefix``) that reads as
    ``value``. A value no variable explains is returned unchanged (and refused
    as not text).

    Raises:
        ConfigurationError: several such variables read as ``value`` with
            different texts: which one Sanic loaded cannot be told.
    """
    if value.__class__ not in (bool, int, float):
        return value

    def reads_as_value(raw: str) -> bool:
        reading = _sanic_reading(raw)
        if reading.__class__ is not value.__class__:
            return False
        if reading == value:
            return True
        # "nan" reads as a NaN, which equals nothing, itself included.
        return isinstance(value, float) and math.isnan(value) and math.isnan(reading)

    default = os.environ.get("SANIC_" + key)
    if default is not None and reads_as_value(default):
        return default
    candidates = {
        name: raw
        for name, raw in os.environ.items()
        if name.endswith(key) and name != key and name.isupper() and reads_as_value(raw)
    }
    texts = set(candidates.values())
    if len(texts) > 1:
        raise ConfigurationError(
            f"{key} was read from the environment as {value!r}, and "
            f"{', '.join(sorted(candidates))} all read so with different texts: set it in "
            "code as a string, or unset the variables that are not meant for this app"
        )
    return texts.pop() if texts else value


def resolve_config(app_config: Mapping[str, Any], options: Mapping[str, Any]) -> WSAuthConfig:
    """Merge defaults, constructor options and ``app.config`` (which wins).

    Raises:
        ConfigurationError: an option is unknown or a value has the wrong type.
        WeakSecretError: no signing secret is configured, or one is too weak.
    """
    unknown = set(options) - OPTION_NAMES
    if unknown:
        raise ConfigurationError(f"unknown WSAuth option(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name in _NAMES:
        key = config_key(name)
        option = _OPTION_FOR_KEY.get(name, name)
        if key in app_config:
            value = app_config[key]
            if name in _TEXT_SETTINGS:
                value = _environment_text(key, value)
            values[name] = _convert(name, value)
        elif option in options:
            values[name] = _convert(name, options[option])
        if values.get(name) is _UNSET:
            del values[name]
    config = WSAuthConfig(**values)
    if not config.secret:
        raise WeakSecretError(
            "no secret configured: set WSAUTH_SECRET (env SANIC_WSAUTH_SECRET) or pass "
            f"secret_keys=; {_KEYGEN_HINT}"
        )
    return config
