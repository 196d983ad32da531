"""Runs the adversarial corpus (cases_*.py) against a real server, one case per test.

Each case: reach its stage on a fresh connection, send its exact bytes, check the exact
reaction; the `sentinel` fixture then checks the server still serves a bystander quickly and
logged no traceback.
"""

from __future__ import annotations

import secrets
from collections import Counter

import pytest

from adversarial import cases_auth, cases_stanzas, cases_xml
from adversarial.corpus import Case, Ctx, Stage
from integration.rawclient import RawClient, RawClients

ALL: list[Case] = cases_xml.CASES + cases_auth.CASES + cases_stanzas.CASES


def test_the_corpus_is_broad() -> None:
    names = [c.name for c in ALL]
    assert len(names) == len(set(names)), [n for n, k in Counter(names).items() if k > 1]
    assert len(ALL) >= 40
    kinds = {c.kind for c in ALL}
    assert {"restricted-xml", "limits", "smuggling", "sasl", "forgery", "jid", "iq"} <= kinds
    assert {c.stage for c in ALL} == set(Stage)


async def reach(stage: Stage, raw: RawClients, jid: str) -> RawClient:
    if stage is Stage.POST_BIND:
        return await raw.login(jid, resource=f"attacker-{secrets.token_hex(4)}")
    c = await raw.connect()
    if stage is Stage.HEADER:
        return c
    await c.open_stream()
    if stage is Stage.PRE_AUTH:
        await c.starttls()
    return c


@pytest.mark.parametrize("case", ALL, ids=str)
async def test_case(case: Case, accounts: dict[str, str], raw: RawClients,
                    sentinel: RawClient) -> None:
    victim: RawClient | None = None
    victim_jid = f"{accounts['victim']}/absent"
    if case.stage is Stage.POST_BIND:
        victim = await raw.login(accounts["victim"], resource=f"v-{secrets.token_hex(4)}")
        assert victim.jid is not None
        victim_jid = victim.jid
    attacker = await reach(case.stage, raw, accounts["attacker"])
    ctx = Ctx(me=attacker.jid or "", victim=victim_jid, victim_bare=accounts["victim"],
              user=accounts["attacker"].split("@")[0])
    data = case.data(ctx)
    await attacker.send(data)
    await case.expect.check(attacker, victim, data, ctx)
