"""Calling AE titles tied to IP addresses: parsing, the policy, and the node refusing a
title that calls from the wrong address (with an audit entry), over loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifi_app.dicom_node.access import (
    AddressRuleError,
    CallingAddressPolicy,
    parse_address_rules,
)
from aifi_app.dicom_node.storage_scp import NodeConfig, StorageNode
from aifi_app.dicom_node.storage_scu import AssociationFailed, Peer, echo
from aifi_app.store.database import Database
from aifi_app.store.receiving import IdleTimes
from tests.helpers.ports import free_port


def test_rules_parse_addresses_and_networks() -> None:
    rules = parse_address_rules(["CT1@10.1.2.3", "CT1@10.9.0.0/16", "MR@::1"])
    assert [str(n) for n in rules["CT1"]] == ["10.1.2.3/32", "10.9.0.0/16"]
    assert [str(n) for n in rules["MR"]] == ["::1/128"]


@pytest.mark.parametrize("entry", ["CT1", "@10.0.0.1", "CT1@", "CT1@not-an-ip", "CT1@10.0.0.0/33"])
def test_bad_rules_are_refused(entry: str) -> None:
    with pytest.raises(AddressRuleError):
        parse_address_rules([entry])


def test_policy() -> None:
    policy = CallingAddressPolicy(parse_address_rules(["CT1@10.1.2.3", "CT1@192.168.0.0/24"]))
    assert policy("CT1", "10.1.2.3") is None
    assert policy("CT1", "192.168.0.77") is None
    assert policy("CT1", "::ffff:192.168.0.77") is None  # IPv4-mapped
    refusal = policy("CT1", "10.1.2.4")
    assert refusal is not None and "10.1.2.4" in refusal and "192.168.0.0/24" in refusal
    assert policy("OTHER", "8.8.8.8") is None  # titles without rules: from anywhere


def _node(tmp_path: Path, rules: tuple[str, ...]) -> StorageNode:
    db = Database(tmp_path / "data" / "q.db")
    node = StorageNode(
        NodeConfig(
            "AIFI",
            "127.0.0.1",
            free_port(),
            ("MODALITY", "ELSEWHERE"),
            131072,
            10,
            calling_ae_addresses=rules,
        ),
        db,
        tmp_path / "data",
        idle_seconds_for=IdleTimes(30.0),
        late_policy="follow_up",
    )
    node.start()
    return node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[StorageNode]:
    n = _node(tmp_path, ("MODALITY@127.0.0.0/8", "ELSEWHERE@10.20.30.40"))
    yield n
    n.stop()
    n.db.close()


def test_title_from_its_address_may_associate(node: StorageNode) -> None:
    assert echo(Peer("AIFI", "127.0.0.1", node.port), calling_ae_title="MODALITY") == 0


def test_title_from_another_address_is_rejected_and_audited(node: StorageNode) -> None:
    with pytest.raises(AssociationFailed, match="rejected"):
        echo(Peer("AIFI", "127.0.0.1", node.port), calling_ae_title="ELSEWHERE")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = node.db.query("SELECT detail FROM audit_events WHERE event = 'association_rejected'")
        if rows:
            break
        time.sleep(0.05)
    assert len(rows) == 1
    detail = rows[0]["detail"]
    assert "'ELSEWHERE' is allowed from 10.20.30.40/32 only, not from 127.0.0.1" in detail
