"""The management service layer: keys, workspaces, credits and the ledger over a ``Store``.

The HTTP management API (api/management.py) and the command line (cli.py) both call these, so
validation and rules live in one place. Failures are :class:`ServiceError` subclasses that each
caller turns into its own shape (an HTTP error body, or ``error: …`` on stderr).
"""

from .common import Page, ServiceError
from .credits import CreditService
from .keys import CreatedKey, KeyService
from .ledger import LedgerFilter, LedgerService
from .workspaces import WorkspaceService

__all__ = [
    "CreatedKey",
    "CreditService",
    "KeyService",
    "LedgerFilter",
    "LedgerService",
    "Page",
    "ServiceError",
    "WorkspaceService",
]
