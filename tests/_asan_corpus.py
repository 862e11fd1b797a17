"""Run the accelerator differential corpus against a sanitizer build of it.

``python -m tests._asan_corpus PATH_TO_SO [ROUNDS]``: loads the extension at
PATH_TO_SO as ``sanic_wsauth._speedups`` (an AddressSanitizer and
UndefinedBehaviorSanitizer build; the caller preloads their runtimes), then
checks the crafted values, every mutation kind and random inputs on both paths
(tests/test_speedups.py's ``_same``). A memory error aborts the process; a
differing answer raises. Prints how many inputs it checked.
"""

from __future__ import annotations

import importlib.util
import random
import sys


def main() -> int:
    path = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    spec = importlib.util.spec_from_file_location("sanic_wsauth._speedups", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["sanic_wsauth._speedups"] = module

    from sanic_wsauth import tokens

    assert tokens._PlainVerifier is module.PlainVerifier, "the sanitizer build is not in use"

    from sanic_wsauth.tokens import MAX_SUBJECT_CHARS

    from . import test_speedups as corpus
    from .test_fuzz import mutate

    checked = 0
    for value in corpus.CRAFTED.values():
        corpus._same(corpus._signed(value))
        checked += 1
    rnd = random.Random(2026)
    seeds = [
        corpus.ISSUER.issue("alice"),
        corpus.ISSUER.issue("s" * MAX_SUBJECT_CHARS),
        corpus.ISSUER.issue("bob", audience="/ws"),
        corpus.ISSUER.issue("erin", claims={"roles": ["reader"] * 80}),
        corpus.OLD_ISSUER.issue("carol"),
    ]
    for _ in range(rounds):
        token = mutate(rnd.choice(seeds), rnd, rnd.randrange(1, 4))
        corpus._same(token)
        noise = bytes(rnd.randrange(256) for _ in range(rnd.randrange(400)))
        corpus._same(corpus._signed(corpus._b64(noise) + b"." + corpus._ts()))
        checked += 2
    print(f"checked {checked}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
