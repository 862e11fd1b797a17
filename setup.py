"""Build the optional C accelerator; everything else is in pyproject.toml.

``sanic_wsauth._speedups`` makes verifying a plain ticket cheaper. It is
optional: where no C compiler is available the build goes on without it and
the pure-Python path runs (the same answers; a test holds the two together).
Set ``SANIC_WSAUTH_NO_EXTENSIONS=1`` to skip building it.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("SANIC_WSAUTH_NO_EXTENSIONS"):
    ext_modules.append(
        Extension("sanic_wsauth._speedups", ["sanic_wsauth/_speedups.c"], optional=True)
    )

setup(ext_modules=ext_modules)
