"""BYOK encryption: AES-256-GCM round trip, tamper and swap detection, master-key rotation."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from aistats_gateway.byok.cache import CredentialCache
from aistats_gateway.byok.crypto import (
    DecryptError,
    Keyring,
    MasterKey,
    MasterKeyError,
    parse_master_keys,
)
from aistats_gateway.byok.fee import ByokFee, FeeError
from aistats_gateway.byok.redact import redact_bytes
from aistats_gateway.byok.service import fingerprint, rotate_credentials, store_credential
from aistats_gateway.settings import ConfigError, load_settings
from aistats_gateway.store.db import create_engine
from aistats_gateway.store.migrate import migrate
from aistats_gateway.store.repositories import Store
from aistats_gateway.store.tables import provider_credentials

SECRET = "sk-byok-secret-0123456789abcdef"
ROW = {"workspace_id": "ws_a", "provider": "openai", "credential_id": "cred_1"}


def master(key_id: str) -> MasterKey:
    return MasterKey(key_id, os.urandom(32))


def env_value(*keys: MasterKey) -> str:
    return ",".join(f"{k.id}:{base64.b64encode(k.secret).decode()}" for k in keys)


def test_seal_then_open_round_trips_with_a_fresh_nonce_each_time() -> None:
    keyring = Keyring((master("k1"),))
    first, second = keyring.seal(SECRET, **ROW), keyring.seal(SECRET, **ROW)
    assert keyring.open(first, **ROW) == SECRET
    assert first.nonce != second.nonce and len(first.nonce) == 12
    assert SECRET.encode() not in first.ciphertext
    assert (first.master_key_id, first.version) == ("k1", 1)


def test_a_flipped_bit_in_ciphertext_or_nonce_is_refused() -> None:
    keyring = Keyring((master("k1"),))
    sealed = keyring.seal(SECRET, **ROW)
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(DecryptError, match="authentication failed"):
        keyring.open(dataclasses.replace(sealed, ciphertext=flipped), **ROW)
    nonce = bytes([sealed.nonce[0] ^ 0x80]) + sealed.nonce[1:]
    with pytest.raises(DecryptError, match="authentication failed"):
        keyring.open(dataclasses.replace(sealed, nonce=nonce), **ROW)


@pytest.mark.parametrize("field", ["workspace_id", "provider", "credential_id"])
def test_a_ciphertext_moved_to_another_row_is_refused(field: str) -> None:
    keyring = Keyring((master("k1"),))
    sealed = keyring.seal(SECRET, **ROW)
    with pytest.raises(DecryptError, match="authentication failed"):
        keyring.open(sealed, **{**ROW, field: "someone-else"})


def test_a_ciphertext_relabelled_with_another_master_key_id_is_refused() -> None:
    k1, k2 = master("k1"), master("k2")
    keyring = Keyring((k2, dataclasses.replace(k1, secret=k2.secret)))  # same bytes, other id
    sealed = keyring.seal(SECRET, **ROW)
    with pytest.raises(DecryptError, match="authentication failed"):
        keyring.open(dataclasses.replace(sealed, master_key_id="k1"), **ROW)


def test_an_unknown_master_key_id_says_which_and_what_to_do() -> None:
    sealed = Keyring((master("old"),)).seal(SECRET, **ROW)
    with pytest.raises(DecryptError, match=r"master key .old.*byok rotate"):
        Keyring((master("new"),)).open(sealed, **ROW)


def test_master_keys_parse_active_first_and_never_echo_key_material() -> None:
    k2, k1 = master("k2"), master("k1")
    parsed = parse_master_keys(" " + env_value(k2, k1) + " ")
    assert [k.id for k in parsed] == ["k2", "k1"] and parsed[0].secret == k2.secret
    assert base64.b64encode(k2.secret).decode() not in repr(parsed)
    urlsafe = f"u1:{base64.urlsafe_b64encode(k1.secret).decode().rstrip('=')}"
    assert parse_master_keys(urlsafe)[0].secret == k1.secret
    short = base64.b64encode(b"x" * 16).decode()
    for bad, problem in [
        (f"k1:{short}", "exactly 32 bytes"),
        ("k1:not*base64", "exactly 32 bytes"),
        (f"{env_value(k1)},{env_value(k1)}", "appears twice"),
        (base64.b64encode(k1.secret).decode(), "<id>:<base64"),
    ]:
        with pytest.raises(MasterKeyError, match=problem) as caught:
            parse_master_keys(bad)
        assert base64.b64encode(k1.secret).decode() not in str(caught.value)
        assert short not in str(caught.value)


def test_settings_read_master_keys_from_the_environment_and_the_fee_from_the_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("byok:\n  fee_percent: '2.5'\n")
    env = {"AISTATS_DATA_DIR": str(tmp_path), "AISTATS_BYOK_MASTER_KEYS": env_value(master("k1"))}
    settings = load_settings(config, env=env)
    assert [k.id for k in settings.byok.master_keys] == ["k1"]
    assert settings.byok.fee.percent == "2.5"
    assert load_settings(None, env={"AISTATS_DATA_DIR": str(tmp_path)}).byok.fee.apply(10**9) == 0
    bad = "k1:" + base64.b64encode(b"short").decode()
    with pytest.raises(ConfigError, match="AISTATS_BYOK_MASTER_KEYS") as caught:
        load_settings(None, env={"AISTATS_DATA_DIR": str(tmp_path), "AISTATS_BYOK_MASTER_KEYS": bad})
    assert bad.split(":")[1] not in str(caught.value)
    config.write_text("byok:\n  fee_percent: '150'\n")
    with pytest.raises(ConfigError, match=r"byok\.fee_percent"):
        load_settings(config, env={"AISTATS_DATA_DIR": str(tmp_path)})


def test_the_fee_is_a_percentage_of_the_list_cost_rounded_up() -> None:
    assert ByokFee.parse("5").apply(154_350) == 7_718  # 7717.5 rounds up
    assert ByokFee.parse("2.5").apply(3) == 1
    assert ByokFee.parse("0").apply(10**12) == 0
    assert ByokFee.parse("100").apply(123) == 123
    assert ByokFee.parse("5").apply(0) == 0
    for bad in ("-1", "abc", "100.01", "NaN"):
        with pytest.raises(FeeError):
            ByokFee.parse(bad)


def test_redaction_catches_raw_and_json_escaped_keys() -> None:
    key = 'sk-with"quote-and-more'
    body = b'{"error": {"message": "Incorrect API key provided: sk-with\\"quote-and-more"}}'
    assert b"quote-and-more" not in redact_bytes(body, [key])
    assert redact_bytes(b"key sk-abcdefgh1234 bad", [None, "sk-abcdefgh1234"]) == b"key [REDACTED] bad"


# --- storage and rotation, on SQLite and Postgres -----------------------------------------------


def run_with_store(database_url: str, action: Callable[[Store, str], Awaitable[None]]) -> None:
    async def go() -> None:
        store = Store(create_engine(database_url))
        try:
            await migrate(store.engine)
            workspace = await store.ensure_workspace("default")
            await action(store, workspace.id)
        finally:
            await store.engine.dispose()

    asyncio.run(go())


def test_rotation_re_encrypts_under_the_new_key_and_then_the_old_one_can_go(database_url: str) -> None:
    k1, k2 = master("k1"), master("k2")

    async def scenario(store: Store, workspace_id: str) -> None:
        old = Keyring((k1,))
        row, _ = await store_credential(
            store, old, workspace_id=workspace_id, provider="openai", api_key=SECRET, label="team"
        )
        other, _ = await store_credential(
            store, old, workspace_id=workspace_id, provider="anthropic", api_key=SECRET + "x", label=None
        )
        # A revoked row is not rotated (its ciphertext is wiped).
        await store.revoke_provider_credential(other.id)

        both = Keyring((k2, k1))  # k2 active, k1 still listed: old rows stay readable
        cache = CredentialCache(both)
        cache.replace(await store.load_provider_credentials())
        assert cache.for_workspace(workspace_id) == {"openai": SECRET}

        # Without k1, the row cannot be read; rotation reports it and changes nothing.
        failed = await rotate_credentials(store, Keyring((k2,)))
        assert (failed.rotated, [cid for cid, _ in failed.failed]) == (0, [row.id])

        report = await rotate_credentials(store, both)
        assert (report.rotated, report.already_current, report.failed) == (1, 0, [])
        again = await rotate_credentials(store, both)
        assert (again.rotated, again.already_current) == (0, 1)

        stored = await store.get_provider_credential(row.id)
        assert stored is not None and stored.sealed is not None
        assert stored.sealed.master_key_id == "k2" and stored.fingerprint == fingerprint(SECRET)
        only_new = CredentialCache(Keyring((k2,)))
        only_new.replace(await store.load_provider_credentials())
        assert only_new.for_workspace(workspace_id) == {"openai": SECRET}

        revoked = await store.get_provider_credential(other.id)
        assert revoked is not None and revoked.revoked_at is not None and revoked.sealed is None

    run_with_store(database_url, scenario)


def test_storing_a_key_again_replaces_the_active_one(database_url: str) -> None:
    keyring = Keyring((master("k1"),))

    async def scenario(store: Store, workspace_id: str) -> None:
        first, replaced = await store_credential(
            store, keyring, workspace_id=workspace_id, provider="openai", api_key=SECRET, label=None
        )
        assert replaced is None
        second, replaced = await store_credential(
            store, keyring, workspace_id=workspace_id, provider="openai", api_key=SECRET + "2", label=None
        )
        assert replaced is not None and replaced.id == first.id
        active = await store.list_provider_credentials(workspace_id)
        assert [r.id for r in active] == [second.id]
        everything = await store.list_provider_credentials(workspace_id, include_revoked=True)
        assert {r.id for r in everything} == {first.id, second.id}
        # The partial unique index: a second active row for the same pair cannot be inserted.
        duplicate = dataclasses.replace(second, id="cred_dup")
        async with store.engine.begin() as conn:
            values = {
                "id": "cred_dup",
                "workspace_id": workspace_id,
                "provider": "openai",
                "fingerprint": duplicate.fingerprint,
                "created_at": duplicate.created_at,
                "updated_at": duplicate.updated_at,
            }
            with pytest.raises(IntegrityError):
                await conn.execute(provider_credentials.insert().values(**values))

    run_with_store(database_url, scenario)


def test_a_row_that_fails_to_decrypt_is_left_out_and_logged_by_id_only(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    keyring = Keyring((master("k1"),))

    async def scenario(store: Store, workspace_id: str) -> None:
        row, _ = await store_credential(
            store, keyring, workspace_id=workspace_id, provider="openai", api_key=SECRET, label=None
        )
        cache = CredentialCache(Keyring((master("k1"),)))  # same id, other bytes: cannot decrypt
        cache.replace(await store.load_provider_credentials())
        assert cache.for_workspace(workspace_id) == {}
        assert row.id in caplog.text and SECRET not in caplog.text

    run_with_store(sqlite_url, scenario)
