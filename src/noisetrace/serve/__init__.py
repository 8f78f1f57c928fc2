"""``noisetrace serve``: a REST API and a web page for scanning (FastAPI + uvicorn).

``create_app`` is imported on first use, so ``noisetrace --help`` (which imports
``noisetrace.serve.command``) works without the ``serve`` extra installed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from noisetrace.serve.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
