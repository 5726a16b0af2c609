"""The application state object: every long-lived dependency, built once in ``app.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

from .byok.cache import CredentialCache
from .catalog import Catalog
from .metrics import Metrics
from .pipeline.auth import KeyCache
from .pipeline.billing import WalletBook
from .pipeline.generation import BackgroundTasks
from .pipeline.health import HealthTracker
from .pipeline.limits import Limiter
from .pipeline.routing import Router
from .providers.http import UpstreamClient
from .settings import Settings
from .store.repositories import Store
from .store.writer import BatchedWriter


@dataclass(slots=True)
class AppState:
    """Passed explicitly to every endpoint; nothing in the gateway lives in module globals."""

    settings: Settings
    catalog: Catalog
    router: Router
    store: Store
    writer: BatchedWriter
    keys: KeyCache
    wallets: WalletBook
    upstream: UpstreamClient
    metrics: Metrics
    health: HealthTracker
    limiter: Limiter
    started_at: float
    ready: bool = field(default=False)
    background: BackgroundTasks = field(default_factory=BackgroundTasks)  # drained before the writer
    # BYOK: workspaces' own provider keys, decrypted in memory (reloaded by the refresher)
    credentials: CredentialCache = field(default_factory=lambda: CredentialCache(None))
