"""Issuers outside Sanic: the Node.js script and the Flask app in examples/.

Both share only the secret with a real Sanic server on 127.0.0.1, and the
tickets they mint open its websocket. The Node script also reproduces the
format's test vectors byte for byte.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sanic import Request, Sanic

from sanic_wsauth import WSAuth
from sanic_wsauth.tokens import TicketVerifier, decode_unverified

from ._support import handshake, new_secret, serve
from .conftest import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
NODE_SCRIPT = ROOT / "examples" / "issue-ticket.mjs"
FLASK_EXAMPLE = ROOT / "examples" / "flask_issuer.py"
VECTORS: dict[str, Any] = json.loads((ROOT / "tests" / "vectors.json").read_text("utf-8"))
SECRET_VARS = ("WSAUTH_SECRET", "SANIC_WSAUTH_SECRET")


def _echo_app(name: str, secret: str) -> Sanic[Any, Any]:
    """A Sanic websocket server that knows only the secret (no ticket endpoint)."""
    app: Sanic[Any, Any] = Sanic(name)
    app.config.WEBSOCKET_PING_INTERVAL = None
    WSAuth(app, secret_keys=secret)

    @app.websocket("/ws")  # type: ignore[untyped-decorator]  # Sanic is untyped here
    async def echo(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(f"{request.ctx.ticket.subject}: {message}")

    return app


# --- Node.js -----------------------------------------------------------------


@pytest.fixture
def node() -> str:
    path = shutil.which("node")
    if path is None:
        skip_or_fail("node is not on PATH: cannot run examples/issue-ticket.mjs")
    assert path is not None
    return path


def run_node(
    node: str, *args: str, secret: str | None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    if secret is not None:
        full_env["WSAUTH_SECRET"] = secret
    full_env.update(env or {})
    return subprocess.run(
        [node, str(NODE_SCRIPT), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _node_args(payload: dict[str, Any]) -> list[str]:
    args = ["--subject", payload["sub"], "--jti", payload["jti"]]
    if "aud" in payload:
        args += ["--audience", payload["aud"]]
    if "ip" in payload:
        args += ["--client-ip", payload["ip"]]
    if "ext" in payload:
        args += ["--claims", json.dumps(payload["ext"])]
    return args


def test_node_script_imports_only_node_builtins() -> None:
    source = NODE_SCRIPT.read_text("utf-8")
    imports = re.findall(r"^\s*import\b.*?from\s+[\"']([^\"']+)[\"']", source, re.MULTILINE)
    assert imports == ["node:crypto", "node:fs", "node:url"]
    assert "require(" not in source and "import(" not in source


UNCOMPRESSED = [v for v in VECTORS["valid"] if not v["compressed"]]


@pytest.mark.node
@pytest.mark.parametrize("vector", UNCOMPRESSED, ids=[v["name"] for v in UNCOMPRESSED])
def test_node_reproduces_the_vector(node: str, vector: dict[str, Any]) -> None:
    args = [*_node_args(vector["payload"]), "--timestamp", str(vector["timestamp"])]
    result = run_node(node, *args, secret=VECTORS["secret"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == vector["ticket"] + "\n"


IMPORTER = """
import { signPayload } from "%s";
// The importer's own command line: nothing the example's CLI understands.
const vectors = JSON.parse(process.env.VECTORS_JSON);
for (const vector of vectors) {
  process.stdout.write(signPayload(process.env.VECTOR_SECRET, vector.payload,
                                   { timestamp: vector.timestamp }) + "\\n");
}
"""


@pytest.mark.node
@pytest.mark.parametrize("how", ["file", "eval"])
def test_node_script_imports_as_a_module_without_running_its_cli(
    node: str, how: str, tmp_path: Path
) -> None:
    # Importing signPayload must not parse the importer's argv (and exit 2):
    # the CLI runs only when issue-ticket.mjs is the entry point.
    code = IMPORTER % NODE_SCRIPT.as_uri()
    if how == "file":
        importer = tmp_path / "importer.mjs"
        importer.write_text(code, "utf-8")
        command = [node, str(importer), "--vectors", "all"]
    else:
        command = [node, "--input-type=module", "-e", code, "--", "--vectors", "all"]
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    env["VECTOR_SECRET"] = VECTORS["secret"]
    env["VECTORS_JSON"] = json.dumps(UNCOMPRESSED)
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [v["ticket"] for v in UNCOMPRESSED]


@pytest.mark.node
def test_node_script_runs_its_cli_through_a_symlink(node: str, tmp_path: Path) -> None:
    # Node runs the entry point by its real path: a symlinked script (e.g. in
    # ~/bin) is still the entry point.
    link = tmp_path / "issue-ticket"
    link.symlink_to(NODE_SCRIPT)
    vector = UNCOMPRESSED[0]
    args = [*_node_args(vector["payload"]), "--timestamp", str(vector["timestamp"])]
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    env["WSAUTH_SECRET"] = VECTORS["secret"]
    result = subprocess.run(
        [node, str(link), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == vector["ticket"] + "\n"


@pytest.mark.node
def test_node_ticket_for_a_large_payload_verifies_uncompressed(node: str) -> None:
    # The minimal issuer never compresses; the verifier accepts that too.
    vector = next(v for v in VECTORS["valid"] if v["compressed"])
    args = [*_node_args(vector["payload"]), "--timestamp", str(vector["timestamp"])]
    result = run_node(node, *args, secret=VECTORS["secret"])
    assert result.returncode == 0, result.stderr
    ticket = result.stdout.strip()
    assert not ticket.startswith(".") and ticket != vector["ticket"]
    verified = TicketVerifier(VECTORS["secret"], clock=lambda: vector["timestamp"]).verify(
        ticket, audience=vector["payload"]["aud"]
    )
    assert dict(verified.claims) == vector["payload"]["ext"]


@pytest.mark.node
async def test_node_ticket_opens_a_sanic_websocket(node: str, secret: str, app_name: str) -> None:
    result = run_node(
        node, "--subject", "nodeuser", "--audience", "/ws", "--claims", '{"plan": "pro"}',
        secret=secret,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ticket = result.stdout.strip()
    verified = TicketVerifier(secret).verify(ticket, audience="/ws")
    assert verified.subject == "nodeuser" and dict(verified.claims) == {"plan": "pro"}
    assert re.fullmatch(r"[0-9a-f]{32}", verified.jti)
    assert verified.jti[12] == "4"  # a UUID4

    async with serve(_echo_app(app_name, secret)) as srv:
        opened = await handshake(f"{srv.ws}/ws?token={ticket}")
        assert opened.status == 101 and opened.reply == "nodeuser: ping"
        again = await handshake(f"{srv.ws}/ws?token={ticket}")
        assert again.status == 401 and json.loads(again.body) == {"error": "replayed"}


@pytest.mark.node
@pytest.mark.parametrize(
    ("secret", "args", "message"),
    [
        (None, [], "set WSAUTH_SECRET"),
        ("too-short-secret", [], "the secret is 16 bytes; at least 32"),
        ("S" * 40, ["--claims", "{x"], "--claims is not valid JSON"),
        ("S" * 40, ["--claims", "[1]"], "--claims must be a JSON object"),
        ("S" * 40, ["--jti", "ABC"], "--jti must be 32 lowercase hex"),
        ("S" * 40, ["--timestamp", "-5"], "--timestamp must be whole seconds"),
        ("S" * 40, ["--bogus", "1"], 'unknown argument "--bogus"'),
    ],
)
def test_node_script_errors_exit_2(
    node: str, secret: str | None, args: list[str], message: str
) -> None:
    result = run_node(node, "--subject", "a", *args, secret=secret)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("issue-ticket: error: ")
    assert message in lines[0]
    if secret:
        assert secret not in result.stderr


@pytest.mark.node
def test_node_reads_the_sanic_prefixed_secret_too(node: str, secret: str) -> None:
    result = run_node(node, "--subject", "a", secret=None, env={"SANIC_WSAUTH_SECRET": secret})
    assert result.returncode == 0, result.stderr
    assert TicketVerifier(secret).verify(result.stdout.strip()).subject == "a"


# --- Flask -------------------------------------------------------------------


def _load_flask_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flask_issuer_example", FLASK_EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flask_example_loads_no_sanic() -> None:
    probe = (
        "import runpy, sys\n"
        f"runpy.run_path({str(FLASK_EXAMPLE)!r}, run_name='flask_issuer')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sanic', 'sanic_routing', 'sanic_testing', 'redis', 'websockets'))\n"
        "assert 'flask' in sys.modules and 'sanic_wsauth.tokens' in sys.modules\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


API_KEY = "flask-example-api-key"


def test_flask_endpoint_refuses_bad_requests(secret: str) -> None:
    app = _load_flask_example().create_app(secret, {API_KEY: "alice"})
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"}):
        response = client.post("/ws-ticket", headers=headers)
        assert response.status_code == 401
        assert response.get_json() == {"error": "unauthorized"}
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    for audience in ("", 5, "x" * 257, "\ud800"):
        response = client.post("/ws-ticket", headers=bearer, json={"audience": audience})
        assert response.status_code == 400 and response.get_json() == {"error": "bad_audience"}
    # A body that may hold an audience and cannot be read: refused, not unbound.
    for data in (b"{not json", b'[{"audience": "/chat"}]', b'"/chat"'):
        response = client.post(
            "/ws-ticket", headers={**bearer, "Content-Type": "application/json"}, data=data
        )
        assert response.status_code == 400 and response.get_json() == {"error": "bad_audience"}
    # An audience it does not read (the query) or a null one: refused, not unbound.
    response = client.post("/ws-ticket?audience=/ws/chat", headers=bearer)
    assert response.status_code == 400 and response.get_json() == {"error": "bad_audience"}
    response = client.post("/ws-ticket", headers=bearer, json={"audience": None})
    assert response.status_code == 400 and response.get_json() == {"error": "bad_audience"}
    assert client.post("/ws-ticket", headers=bearer).status_code == 200  # no body: unbound
    assert client.get("/ws-ticket", headers=bearer).status_code == 405


def test_flask_example_refuses_a_weak_secret() -> None:
    module = _load_flask_example()
    with pytest.raises(Exception, match="at least 32") as caught:
        module.create_app("short", {API_KEY: "alice"})
    assert getattr(caught.value, "reason", None) == "weak_secret"


async def test_flask_ticket_opens_a_sanic_websocket(secret: str, app_name: str) -> None:
    flask_app = _load_flask_example().create_app(secret, {API_KEY: "alice"}, max_age=20)
    client = flask_app.test_client()
    bearer = {"Authorization": f"Bearer {API_KEY}"}

    response = client.post("/ws-ticket", headers=bearer)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"token", "expires_in"} and body["expires_in"] == 20
    payload, _ = decode_unverified(body["token"])
    assert payload["sub"] == "alice" and "aud" not in payload

    bound = client.post("/ws-ticket", headers=bearer, json={"audience": "/ws"}).get_json()
    elsewhere = client.post("/ws-ticket", headers=bearer, json={"audience": "/x"}).get_json()
    foreign = (
        _load_flask_example()
        .create_app(new_secret(), {API_KEY: "mallory"})
        .test_client()
        .post("/ws-ticket", headers=bearer)
        .get_json()
    )

    async with serve(_echo_app(app_name, secret)) as srv:
        opened = await handshake(f"{srv.ws}/ws?token={body['token']}")
        assert opened.status == 101 and opened.reply == "alice: ping"
        again = await handshake(f"{srv.ws}/ws?token={body['token']}")
        assert again.status == 401 and json.loads(again.body) == {"error": "replayed"}

        opened = await handshake(f"{srv.ws}/ws?token={bound['token']}")
        assert opened.status == 101 and opened.reply == "alice: ping"
        refused = await handshake(f"{srv.ws}/ws?token={elsewhere['token']}")
        assert refused.status == 403 and json.loads(refused.body) == {"error": "audience_mismatch"}
        refused = await handshake(f"{srv.ws}/ws?token={foreign['token']}")
        assert refused.status == 401 and json.loads(refused.body) == {"error": "bad_signature"}


async def test_flask_ip_bound_ticket_opens_only_from_that_address(
    secret: str, app_name: str
) -> None:
    flask_app = _load_flask_example().create_app(secret, {API_KEY: "alice"}, bind_ip=True)
    bearer = {"Authorization": f"Bearer {API_KEY}"}

    def ticket_from(address: str) -> str:
        response = flask_app.test_client().post(
            "/ws-ticket", headers=bearer, environ_base={"REMOTE_ADDR": address}
        )
        token: str = response.get_json()["token"]
        return token

    local, remote = ticket_from("127.0.0.1"), ticket_from("198.51.100.4")
    assert decode_unverified(local)[0]["ip"] == "127.0.0.1"
    async with serve(_echo_app(app_name, secret)) as srv:
        opened = await handshake(f"{srv.ws}/ws?token={local}")
        assert opened.status == 101
        refused = await handshake(f"{srv.ws}/ws?token={remote}")
        assert refused.status == 403 and json.loads(refused.body) == {"error": "ip_mismatch"}
