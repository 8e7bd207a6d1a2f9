"""The compiled engine of the URL rewrite (plugins/wpclone/_rewrite_core.c); the rest is in pyproject.toml.

``optional``: where it cannot be built (no C compiler or Python headers) the package installs without it and
``wpclone.rewrite`` runs its Python engine. ``scripts/setup.sh`` builds it in place for development.
"""

from __future__ import annotations

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wpclone._rewrite_core",
            ["plugins/wpclone/_rewrite_core.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-D_GNU_SOURCE"],
            optional=True,
        )
    ]
)
