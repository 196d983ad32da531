"""Credentials (SCRAM keys only, RFC 5802 §2.2 / SECURITY.md) and the per-IP brute-force
limiter (SECURITY.md: 10 failures / 10 min → 15 min ban, checked before any hashing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from blether.core.auth import (
    SCRAM_ITERATIONS,
    Authenticator,
    AuthFailureLimiter,
    make_credentials_sync,
)
from blether.storage import AccountExists, AccountNotFound, Storage, open_storage

# -- AuthFailureLimiter ---------------------------------------------------------------------

def test_below_the_limit_nobody_is_banned() -> None:
    lim = AuthFailureLimiter(max_failures=3, window=60, ban_time=300)
    lim.failure("10.0.0.1", now=0)
    lim.failure("10.0.0.1", now=1)
    assert not lim.is_banned("10.0.0.1", now=2)


def test_max_failures_in_the_window_bans_for_the_ban_time() -> None:
    lim = AuthFailureLimiter(max_failures=3, window=60, ban_time=300)
    for t in (0, 10, 20):
        lim.failure("10.0.0.1", now=t)
    assert lim.is_banned("10.0.0.1", now=21)
    assert lim.is_banned("10.0.0.1", now=319)
    assert not lim.is_banned("10.0.0.1", now=320)
    # After the ban the slate is clean: one more failure does not re-ban.
    lim.failure("10.0.0.1", now=321)
    assert not lim.is_banned("10.0.0.1", now=322)


def test_failures_older_than_the_window_do_not_count() -> None:
    lim = AuthFailureLimiter(max_failures=3, window=60, ban_time=300)
    lim.failure("10.0.0.1", now=0)
    lim.failure("10.0.0.1", now=30)
    lim.failure("10.0.0.1", now=61)  # the first one has left the window
    assert not lim.is_banned("10.0.0.1", now=62)
    lim.failure("10.0.0.1", now=62)  # 30, 61, 62: three within 60 s
    assert lim.is_banned("10.0.0.1", now=63)


def test_addresses_are_counted_separately() -> None:
    lim = AuthFailureLimiter(max_failures=2, window=60, ban_time=300)
    lim.failure("10.0.0.1", now=0)
    lim.failure("10.0.0.2", now=0)
    assert not lim.is_banned("10.0.0.1", now=1) and not lim.is_banned("10.0.0.2", now=1)
    lim.failure("10.0.0.1", now=1)
    assert lim.is_banned("10.0.0.1", now=2) and not lim.is_banned("10.0.0.2", now=2)


def test_success_clears_the_count() -> None:
    lim = AuthFailureLimiter(max_failures=2, window=60, ban_time=300)
    lim.failure("10.0.0.1", now=0)
    lim.success("10.0.0.1")
    lim.failure("10.0.0.1", now=1)
    assert not lim.is_banned("10.0.0.1", now=2)


def test_unknown_address_is_not_banned() -> None:
    assert not AuthFailureLimiter(1, 60, 300).is_banned("192.0.2.1")


def test_real_clock_is_used_by_default() -> None:
    lim = AuthFailureLimiter(max_failures=1, window=60, ban_time=300)
    lim.failure("10.0.0.1")
    assert lim.is_banned("10.0.0.1")


# -- credentials ----------------------------------------------------------------------------

def test_credentials_for_both_hashes_never_the_password() -> None:
    creds = make_credentials_sync("correct horse")
    assert [c.mechanism for c in creds] == ["SCRAM-SHA-1", "SCRAM-SHA-256"]
    for c in creds:
        assert c.iterations == SCRAM_ITERATIONS >= 10000  # XEP-0438 / SECURITY.md
        assert len(c.salt) >= 16
        assert b"correct horse" not in c.salt + c.stored_key + c.server_key
    sha1, sha256 = creds
    assert len(sha1.stored_key) == 20 and len(sha256.stored_key) == 32


def test_salts_are_random() -> None:
    a, b = make_credentials_sync("same", 4096), make_credentials_sync("same", 4096)
    assert a[0].salt != b[0].salt and a[0].stored_key != b[0].stored_key


def test_explicit_salt_is_deterministic() -> None:
    a = make_credentials_sync("same", 4096, salt=b"0123456789abcdef")
    b = make_credentials_sync("same", 4096, salt=b"0123456789abcdef")
    assert a == b


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    st = await open_storage(f"sqlite:///{tmp_path}/auth.db")
    yield st
    await st.close()


async def test_create_verify_and_change_password(storage: Storage) -> None:
    auth = Authenticator(storage.accounts, iterations=4096)
    await auth.create_account("juliet@localhost", "r0meo")
    assert await auth.verify_password("juliet@localhost", "r0meo")
    assert not await auth.verify_password("juliet@localhost", "R0meo")
    assert not await auth.verify_password("juliet@localhost", "")
    assert not await auth.verify_password("nobody@localhost", "r0meo")
    await auth.set_password("juliet@localhost", "balcony")
    assert await auth.verify_password("juliet@localhost", "balcony")
    assert not await auth.verify_password("juliet@localhost", "r0meo")
    stored = await storage.accounts.get_credentials("juliet@localhost", "SCRAM-SHA-256")
    assert stored is not None and stored.iterations == 4096


async def test_duplicate_and_missing_accounts(storage: Storage) -> None:
    auth = Authenticator(storage.accounts, iterations=4096)
    await auth.create_account("juliet@localhost", "x")
    with pytest.raises(AccountExists):
        await auth.create_account("juliet@localhost", "y")
    with pytest.raises(AccountNotFound):
        await auth.set_password("nobody@localhost", "y")


async def test_password_check_falls_back_to_sha1_keys(storage: Storage) -> None:
    # An account imported with SCRAM-SHA-1 keys only (e.g. from Prosody) can still log in.
    sha1_only = [c for c in make_credentials_sync("old", 4096) if c.mechanism == "SCRAM-SHA-1"]
    await storage.accounts.create("legacy@localhost", sha1_only)
    auth = Authenticator(storage.accounts)
    assert await auth.verify_password("legacy@localhost", "old")
    assert not await auth.verify_password("legacy@localhost", "new")
