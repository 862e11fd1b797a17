"""Benchmarks for sanic-wsauth: ``python -m benchmarks`` (or ``make bench``).

Sections (each a module): :mod:`benchmarks.micro` (per-operation costs),
:mod:`benchmarks.e2e` (real servers, client load from separate processes),
:mod:`benchmarks.memory` (the in-memory replay set under churn). Results go
to ``benchmarks/results/`` as Markdown, JSON and (with matplotlib) a PNG.
Every comparison is a ratio of medians over interleaved rounds of one run.
"""

from __future__ import annotations

__all__: list[str] = []
