"""Per-operation costs, measured side by side in interleaved rounds.

Every case runs the same operation the same way: a batch of ``n`` calls timed
with ``perf_counter`` (the loop's own overhead, some tens of nanoseconds, is in
every case alike). Tickets are drawn from a pool of distinct pre-issued ones.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
from base64 import urlsafe_b64decode
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import cycle, islice
from typing import Any

from sanic_wsauth.stores.memory import MemoryReplayStore
from sanic_wsauth.tokens import (
    SALT,
    TicketIssuer,
    TicketVerifier,
    _derive,
    _new_jti,
    stock_serializer,
)

from .guard import guard_batches
from .seed import RedisTicketCache, TTLTicketCache
from .timing import Batch, calibrate, interleave, median, median_ratio

__all__ = ["MicroResult", "floor_verify", "run_micro"]

SUBJECT = "user-42"
POOL = 1000
#: Seconds the pre-issued tickets and JWTs stay valid. The run takes longer
#: than the default 30 s, and the age check costs the same whatever the limit
#: (ours, stock itsdangerous and PyJWT alike).
LIFETIME = 3600

#: Human-readable description of every case, in report order.
DESCRIPTIONS: dict[str, str] = {
    "ours.issue": "TicketIssuer.issue(subject)",
    "stock.dumps": "itsdangerous URLSafeTimedSerializer.dumps({jti, sub})",
    "pyjwt.encode": "PyJWT jwt.encode({jti, sub, iat, exp}, HS256)",
    "seed.issue.memory": "seed: uuid4 into an in-process TTL cache",
    "ours.verify": "TicketVerifier.verify(token), with the C accelerator when built",
    "ours.verify.python": "TicketVerifier.verify(token), pure Python (accelerator off)",
    "stock.loads": "itsdangerous URLSafeTimedSerializer.loads(token, max_age=LIFETIME)",
    "pyjwt.decode": "PyJWT jwt.decode(token, HS256)",
    "floor": "floor: one hmac.digest + urlsafe_b64decode + json.loads",
    "seed.verify.memory": "seed: pop the id from the in-process TTL cache",
    "ours.claim.memory": "MemoryReplayStore.claim(jti)",
    "ours.verify+claim.memory": "verify + MemoryReplayStore.claim",
    "guard.public": "the guard middleware on a real Request, @public route (baseline)",
    "guard.ticket": "the guard middleware, ticket in the query, memory store",
    "guard.ticket+origin": "the same with an Origin header (the server's own)",
    "ours.claim.redis": "RedisReplayStore.claim(jti), pipelined connection",
    "ours.claim.redis-py": "RedisReplayStore.claim(jti), redis-py pool (rediss://, options)",
    "ours.claim.redis.x8": "the same, pipelined, 8 concurrent callers (time per claim)",
    "ours.claim.redis-py.x8": "the same, redis-py pool, 8 concurrent callers (time per claim)",
    "redis.set_nx": "raw Redis SET NX EX (reference for a claim)",
    "seed.issue.redis": "seed: SET id subject EX 30",
    "seed.verify.redis": "seed: GETDEL id",
}


@dataclass
class MicroResult:
    """Seconds per operation, by case, one value per round."""

    per_op: dict[str, list[float]]
    counts: dict[str, int]
    ratios: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": {
                name: {
                    "description": DESCRIPTIONS.get(name, name),
                    "median_us": median(values) * 1e6,
                    "min_us": min(values) * 1e6,
                    "rounds_us": [v * 1e6 for v in values],
                    "batch": self.counts[name],
                }
                for name, values in self.per_op.items()
            },
            "ratios": self.ratios,
            "notes": self.notes,
        }


def _timed(op: Callable[[Any], object], pool: list[Any]) -> Batch:
    def batch(n: int) -> float:
        items = list(islice(cycle(pool), n))
        start = time.perf_counter()
        for item in items:
            op(item)
        return time.perf_counter() - start

    return batch


def _timed_fresh(op: Callable[[Any], object], make: Callable[[int], list[Any]]) -> Batch:
    """Like :func:`_timed`, for consuming operations: fresh inputs each batch."""

    def batch(n: int) -> float:
        items = make(n)
        start = time.perf_counter()
        for item in items:
            op(item)
        return time.perf_counter() - start

    return batch


def _timed_async(
    loop: asyncio.AbstractEventLoop,
    op: Callable[[Any], Awaitable[object]],
    make: Callable[[int], list[Any]],
    callers: int = 1,
) -> Batch:
    """Like :func:`_timed_fresh`, for coroutines, awaited by ``callers`` tasks.

    One caller awaits each operation in turn (for Redis: one round trip's
    latency). Several share the items, as handshakes in flight at once in a
    busy worker: the time per operation is then the worker's cost.
    """

    async def run(items: list[Any]) -> float:
        queue = iter(items)

        async def caller() -> None:
            for item in queue:
                await op(item)

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return time.perf_counter() - start

    def batch(n: int) -> float:
        return loop.run_until_complete(run(make(n)))

    return batch


def floor_verify(key: bytes, token: str) -> Callable[[], object]:
    """The least work any verify of ``token`` must do, inputs pre-split."""
    value, _, _ = token.rpartition(".")
    payload = value.rpartition(".")[0]
    signed = value.encode("ascii")
    padded = payload + "=" * (-len(payload) % 4)

    def floor() -> object:
        hmac.digest(key, signed, "sha256")
        return json.loads(urlsafe_b64decode(padded))

    return floor


def _redis_client(url: str, loop: asyncio.AbstractEventLoop) -> Any | None:
    try:
        import redis.asyncio as redis_asyncio
    except ImportError:
        return None
    client = redis_asyncio.Redis.from_url(url, socket_timeout=2)
    try:
        loop.run_until_complete(client.ping())
    except Exception:  # noqa: BLE001 - no Redis: skip those cases
        loop.run_until_complete(client.aclose())
        return None
    return client


def _redis_store(url: str, prefix: str, loop: asyncio.AbstractEventLoop) -> Any | None:
    try:
        from sanic_wsauth.stores.redis import RedisReplayStore  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    store = RedisReplayStore(url, prefix=prefix)
    loop.run_until_complete(store.open())
    return store


def _via_redis_py(url: str) -> str:
    """``url`` with a driver option: the store then goes through redis-py."""
    return url + ("&" if "?" in url else "?") + "health_check_interval=0"


def run_micro(
    *, quick: bool, rounds: int, redis_url: str | None, prefix: str, secret: str
) -> MicroResult:
    """Measure every case in ``rounds`` interleaved rounds."""
    import jwt

    issuer = TicketIssuer(secret)
    verifier = TicketVerifier(secret, max_age=LIFETIME)
    python_verifier = TicketVerifier(secret, max_age=LIFETIME)
    python_verifier._plain = None  # as where the extension is not built
    stock = stock_serializer(secret)
    key = _derive(secret.encode(), SALT.encode())
    jwt_key = secret.encode()
    now = int(time.time())

    tokens = [issuer.issue(SUBJECT) for _ in range(POOL)]
    jwts = [
        jwt.encode({"jti": _new_jti(), "sub": SUBJECT, "iat": now, "exp": now + LIFETIME}, jwt_key)
        for _ in range(POOL)
    ]
    floors = [floor_verify(key, token) for token in tokens]
    cache = TTLTicketCache()
    memory_store: list[MemoryReplayStore] = [MemoryReplayStore()]

    def jtis(n: int) -> list[str]:
        memory_store[0] = MemoryReplayStore()  # fresh per batch: never near the cap
        return [_new_jti() for _ in range(n)]

    def seed_ids(n: int) -> list[str]:
        return [cache.issue(SUBJECT) for _ in range(n)]

    def verify_and_claim_tokens(n: int) -> list[str]:
        memory_store[0] = MemoryReplayStore()
        return [issuer.issue(SUBJECT) for _ in range(n)]

    loop = asyncio.new_event_loop()

    async def verify_and_claim(token: str) -> bool:
        ticket = verifier.verify(token)
        return await memory_store[0].claim(ticket.jti, ticket.expires_at)

    async def claim(jti: str) -> bool:
        return await memory_store[0].claim(jti, now + 35)

    batches: dict[str, Batch] = {
        "ours.issue": _timed(lambda s: issuer.issue(s), [SUBJECT]),
        "stock.dumps": _timed(lambda s: stock.dumps({"jti": _new_jti(), "sub": s}), [SUBJECT]),
        "pyjwt.encode": _timed(
            lambda s: jwt.encode(
                {"jti": _new_jti(), "sub": s, "iat": int(time.time()), "exp": now + 30},
                jwt_key,
                algorithm="HS256",
            ),
            [SUBJECT],
        ),
        "seed.issue.memory": _timed(lambda s: cache.issue(s), [SUBJECT]),
        "ours.verify": _timed(lambda t: verifier.verify(t), tokens),
        "ours.verify.python": _timed(lambda t: python_verifier.verify(t), tokens),
        "stock.loads": _timed(lambda t: stock.loads(t, max_age=LIFETIME), tokens),
        "pyjwt.decode": _timed(lambda t: jwt.decode(t, jwt_key, algorithms=["HS256"]), jwts),
        "floor": _timed(lambda f: f(), floors),
        "seed.verify.memory": _timed_fresh(lambda t: cache.consume(t), seed_ids),
        "ours.claim.memory": _timed_async(loop, claim, jtis),
        "ours.verify+claim.memory": _timed_async(loop, verify_and_claim, verify_and_claim_tokens),
        **guard_batches(loop, secret, SUBJECT),
    }
    notes: list[str] = []
    client = _redis_client(redis_url, loop) if redis_url else None
    store = pooled = None
    if client is None:
        notes.append("Redis unavailable: Redis cases skipped")
    else:
        seed_redis = RedisTicketCache(client, prefix=prefix + "seed:")

        async def set_nx(jti: str) -> object:
            return await client.set(prefix + "nx:" + jti, b"1", nx=True, ex=35)

        async def seed_issue(subject: str) -> str:
            return await seed_redis.issue(subject)

        async def seed_consume(token: str) -> str | None:
            return await seed_redis.consume(token)

        def seed_redis_ids(n: int) -> list[str]:
            async def make() -> list[str]:
                pipe = client.pipeline(transaction=False)
                ids = [_new_jti() for _ in range(n)]
                for token in ids:
                    pipe.set(seed_redis.prefix + token, SUBJECT, ex=30)
                await pipe.execute()
                return ids

            return loop.run_until_complete(make())

        store = _redis_store(redis_url or "", prefix + "jti:", loop)
        pooled = _redis_store(_via_redis_py(redis_url or ""), prefix + "jti:", loop)
        if store is not None and pooled is not None:
            batches["ours.claim.redis"] = _timed_async(
                loop, lambda jti: store.claim(jti, time.time() + 35), jtis
            )
            batches["ours.claim.redis-py"] = _timed_async(
                loop, lambda jti: pooled.claim(jti, time.time() + 35), jtis
            )
            batches["ours.claim.redis.x8"] = _timed_async(
                loop, lambda jti: store.claim(jti, time.time() + 35), jtis, callers=8
            )
            batches["ours.claim.redis-py.x8"] = _timed_async(
                loop, lambda jti: pooled.claim(jti, time.time() + 35), jtis, callers=8
            )
        else:
            notes.append("sanic_wsauth.stores.redis not importable: RedisReplayStore skipped")
        batches["redis.set_nx"] = _timed_async(loop, set_nx, jtis)
        batches["seed.issue.redis"] = _timed_async(loop, seed_issue, lambda n: [SUBJECT] * n)
        batches["seed.verify.redis"] = _timed_async(loop, seed_consume, seed_redis_ids)

    target = 0.004 if quick else 0.05
    counts = {name: calibrate(batch, target) for name, batch in batches.items()}
    per_op = interleave(batches, counts, rounds)

    for opened in (store, pooled):
        if opened is not None:
            loop.run_until_complete(opened.close())
    if client is not None:
        loop.run_until_complete(client.aclose())
    loop.close()

    result = MicroResult(per_op=per_op, counts=counts, notes=notes)
    result.ratios = {
        "stock.loads / ours.verify": median_ratio(per_op, "stock.loads", "ours.verify"),
        "ours.verify / floor": median_ratio(per_op, "ours.verify", "floor"),
        "stock.loads / ours.verify.python": median_ratio(
            per_op, "stock.loads", "ours.verify.python"
        ),
        "ours.verify.python / floor": median_ratio(per_op, "ours.verify.python", "floor"),
        "ours.verify.python / ours.verify": median_ratio(
            per_op, "ours.verify.python", "ours.verify"
        ),
        "stock.dumps / ours.issue": median_ratio(per_op, "stock.dumps", "ours.issue"),
        "pyjwt.decode / ours.verify": median_ratio(per_op, "pyjwt.decode", "ours.verify"),
        "pyjwt.encode / ours.issue": median_ratio(per_op, "pyjwt.encode", "ours.issue"),
        "guard.ticket / ours.verify+claim.memory": median_ratio(
            per_op, "guard.ticket", "ours.verify+claim.memory"
        ),
    }
    if "ours.claim.redis" in per_op:
        result.ratios["ours.claim.redis-py / ours.claim.redis"] = median_ratio(
            per_op, "ours.claim.redis-py", "ours.claim.redis"
        )
        result.ratios["ours.claim.redis-py.x8 / ours.claim.redis.x8"] = median_ratio(
            per_op, "ours.claim.redis-py.x8", "ours.claim.redis.x8"
        )
        result.ratios["redis.set_nx / ours.claim.redis"] = median_ratio(
            per_op, "redis.set_nx", "ours.claim.redis"
        )
    return result


if __name__ == "__main__":  # pragma: no cover - ad-hoc runs
    res = run_micro(
        quick=False,
        rounds=int(os.environ.get("ROUNDS", "7")),
        redis_url="redis://127.0.0.1:6379/0",
        prefix=f"wsauth-bench:{os.getpid()}:",
        secret="s" * 48,
    )
    data = res.to_json()
    for name, case in data["cases"].items():
        print(f"{name:28s} {case['median_us']:9.2f} us  (min {case['min_us']:.2f})")
    for name, value in res.ratios.items():
        print(f"{name:28s} {value:6.2f}")
