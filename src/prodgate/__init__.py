"""prodgate: the production layer for ML models.

Register a model as an immutable version, serve it behind a gateway that checks a
data contract, micro-batches inference and records every decision in a
tamper-evident audit log.
"""

from __future__ import annotations

__version__ = "0.1.0"

from prodgate.exceptions import ProdgateError
from prodgate.settings import Settings
from prodgate.spec import Spec
from prodgate.spec import load as load_spec

__all__ = ["ProdgateError", "Settings", "Spec", "__version__", "create_app", "load_spec"]


def __getattr__(name: str) -> object:
    # The server pulls in Starlette and the model runtimes; import it on first use.
    if name == "create_app":
        from prodgate.server.app import create_app

        return create_app
    raise AttributeError(name)
