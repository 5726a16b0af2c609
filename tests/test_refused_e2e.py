"""Records the database refuses, end to end: the real gateway sets them aside and keeps serving,
shows them, keeps its balance equal to the database's, and `spool retry-refused` writes them
once the cause is gone, charging each exactly once.

The refusal is an operator's SQLite trigger on one key's rows (a constraint error, as a
migration gone wrong or a new CHECK would raise); requests come through the official SDK.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from aistats_gateway.store.records import WalletRow
from aistats_gateway.store.repositories import Store
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Admin, GatewayServer, fake_provider_config, gateway_settings, wait_for

from .test_cli import cli
from .test_usage_bounds_e2e import HI, PAID, stored


def _health(server: GatewayServer) -> dict[str, Any]:
    return dict(httpx.get(f"{server.base_url}/v1/health", timeout=5).json())


def _balance_shown(server: GatewayServer, key: str) -> int:
    """The workspace balance this gateway shows, in nano-USD."""
    reply = httpx.get(f"{server.base_url}/v1/credits", headers={"Authorization": f"Bearer {key}"}, timeout=5)
    return int(reply.json()["nanos"]["balance"])


def _wallet(admin: Admin) -> WalletRow:
    workspace_id = admin.workspace_id()

    async def read(store: Store) -> WalletRow:
        return await store.get_wallet(workspace_id)

    return admin.run(read)  # type: ignore[no-any-return]


def test_refused_records_are_set_aside_shown_and_retried_with_each_charge_once(
    tmp_path: Path, fake_server: FakeOpenAIServer
) -> None:
    settings = gateway_settings(tmp_path, fake_provider_config(fake_server.base_url))
    admin = Admin(settings)
    refused_key, refused_kid = admin.create_key(name="refused")
    kept_key, _ = admin.create_key(name="kept")
    admin.grant(10**9)  # $1
    database = sqlite3.connect(tmp_path / "data" / "gateway.db")
    database.execute(
        f"CREATE TRIGGER refuse_one_key BEFORE INSERT ON generations WHEN NEW.key_id = '{refused_kid}' "
        "BEGIN SELECT RAISE(ABORT, 'refused by an operator trigger'); END"
    )
    database.commit()

    with GatewayServer(settings, refresh_interval=0.1) as server:
        refused = [
            server.openai(refused_key).chat.completions.create(model=PAID, messages=HI) for _ in range(3)
        ]
        kept = [server.openai(kept_key).chat.completions.create(model=PAID, messages=HI) for _ in range(3)]
        wait_for(lambda: all(stored(admin, reply.id) is not None for reply in kept), timeout=10)
        wait_for(lambda: _health(server)["refused_records"] == 3, timeout=10)
        assert all(stored(admin, reply.id) is None for reply in refused)
        status = json.loads(cli(tmp_path, "spool", "status", "--json").stdout)
        assert sum(item["records"] for item in status["refused"]) == 3
        assert "refused by an operator trigger" in status["refused"][0]["reason"]
        each = stored(admin, kept[0].id)
        assert each is not None and each.cost_nano > 0
        # The gateway's balance is the database's: it holds no charge the database does not have.
        written = _wallet(admin)
        assert written.spent_total_nano == 3 * each.cost_nano
        wait_for(lambda: _balance_shown(server, kept_key) == written.balance_nano, timeout=5)

        database.execute("DROP TRIGGER refuse_one_key")
        database.commit()
        retried = cli(tmp_path, "spool", "retry-refused")
        assert "written 3, still refused 0" in retried.stdout
        assert all(stored(admin, reply.id) is not None for reply in refused)
        after = _wallet(admin)
        assert after.spent_total_nano == 6 * each.cost_nano, "each refused record charged once"
        cli(tmp_path, "spool", "retry-refused")  # a second run finds nothing and charges nothing
        assert _wallet(admin).spent_total_nano == 6 * each.cost_nano
        wait_for(lambda: _balance_shown(server, kept_key) == after.balance_nano, timeout=5)
    database.close()
