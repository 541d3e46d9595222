"""The service's audit records on the product's one keyed hash chain, with the head anchored.

Enroll, delete, template migration, key rotation and every admin call append a record to the
audit log of :mod:`speakerops.registry.audit` (``serve.audit_log``, the same file promotions
write: sequence numbers, ``prev_sha256`` chain, an HMAC under the keyring's ``audit`` key) and
then anchor the new head on the registered model, as promotions do (tag ``audit.head``), so
``speakerops audit verify`` refuses an edited, forged, reordered or truncated service record
like any other. Who acted: the tenant and the token id (never a token, audio or a raw id).

The head is anchored on the served model's registered name when the service runs a registry
model (``models:/...``); a command (``templates migrate``, ``keys rotate``) anchors on
``register.model_name`` when the store at ``paths.registry_dir`` already has it. A service on
an encoder file, or a project without a registry yet, appends MAC'ed records only: the next
anchored append (any promotion) covers them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from speakerops.core.keys import Keyring
from speakerops.core.mlflow import client as mlflow_client
from speakerops.registry.audit import AUDIT_PURPOSE, anchor_head, append_audit


class AuditTrail:
    """Append + anchor (see the module docstring); ``client`` None: no anchoring."""

    def __init__(
        self, path: str | Path, keyring: Keyring, *, client: Any = None, model_name: str = ""
    ) -> None:
        self.path, self.keyring = Path(path), keyring
        self.client, self.model_name = (client, model_name) if model_name else (None, "")
        keyring.active_key(AUDIT_PURPOSE)  # unwrapped now: a master rotation later keeps it

    @property
    def anchored(self) -> bool:
        return self.client is not None

    def record(self, action: str, **fields: Any) -> dict[str, Any]:
        written = append_audit(self.path, {"action": action, **fields}, keyring=self.keyring)
        if self.client is not None:
            anchor_head(self.client, self.model_name, written)
        return written


def registry_client(registry_dir: str | Path, model_name: str) -> Any:
    """A client on the store when it exists and has `model_name` registered, else None."""
    embedded = Path(registry_dir) / "mlflow.db"
    if not os.environ.get("MLFLOW_TRACKING_URI") and not embedded.is_file():
        return None
    c = mlflow_client(registry_dir)
    try:
        c.get_registered_model(model_name)
    except MlflowException:
        return None
    return c


def command_trail(cfg: Any, keyring: Keyring) -> AuditTrail:
    """The trail of a command (``templates migrate``, ``keys rotate``): ``serve.audit_log``,
    anchored on ``register.model_name`` when the registry has it."""
    name = str(cfg.register.model_name)
    c = registry_client(cfg.paths.registry_dir, name)
    return AuditTrail(cfg.serve.audit_log, keyring, client=c, model_name=name if c else "")
