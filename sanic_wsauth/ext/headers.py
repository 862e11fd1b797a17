"""Header lookups on the guard's hot path, past Sanic's ``Header.__getattr__``.

Sanic's :class:`~sanic.compat.Header` (a ``CIMultiDict``) defines a Python
``__getattr__``, which sends every attribute lookup on it (``headers.getall``)
down a slower path: some 470 instructions each. Calling multidict's C methods
directly skips it.
"""

from __future__ import annotations

from multidict import CIMultiDict, istr

__all__ = ["ORIGIN", "header_get", "header_getall"]

header_get = CIMultiDict.get
header_getall = CIMultiDict.getall
#: ``Origin`` as multidict's case-insensitive name (read by the origin check and
#: the guard's pre-check): a lookup skips folding it.
ORIGIN = istr("origin")
