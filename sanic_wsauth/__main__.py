"""``python -m sanic_wsauth``: the same as the ``sanic-wsauth`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
