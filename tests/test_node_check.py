""" "Test connection" for every protocol, against a real Orthanc (DICOM, DICOMweb, HTTP)
and a plain TCP listener (MLLP); failures in words."""

from __future__ import annotations

import socket

import pytest

from aifi_app.config.settings import RemoteNode
from aifi_app.node_check import check_node
from tests.helpers.orthanc import DICOMWEB_PLUGIN
from tests.helpers.ports import free_port

CALLING = "AIFI_TEST"


@pytest.mark.orthanc
def test_every_protocol_against_orthanc(orthanc_factory) -> None:  # type: ignore[no-untyped-def]
    orthanc = orthanc_factory({"aifi": (CALLING, "127.0.0.1", free_port())}, [DICOMWEB_PLUGIN])
    base = f"http://127.0.0.1:{orthanc.http_port}"

    dicom = check_node(
        RemoteNode("pacs", orthanc.aet, "127.0.0.1", orthanc.dicom_port), CALLING, timeout=10
    )
    assert dicom.ok, dicom.words
    assert "C-ECHO answered" in dicom.words

    web = check_node(
        RemoteNode("web", protocol="dicomweb", url=f"{base}/dicom-web"), CALLING, timeout=10
    )
    assert web.ok, web.words
    assert "QIDO-RS" in web.words and "HTTP 200" in web.words

    ping = check_node(RemoteNode("api", protocol="http", url=f"{base}/system"), CALLING)
    assert ping.ok and "HTTP 200" in ping.words

    # failures say what happened
    stranger = check_node(
        RemoteNode("pacs", orthanc.aet, "127.0.0.1", orthanc.dicom_port), "STRANGER", timeout=10
    )
    assert not stranger.ok and "failed" in stranger.words
    missing = check_node(
        RemoteNode("web", protocol="dicomweb", url=f"{base}/no-dicom-web"), CALLING
    )
    assert not missing.ok and "HTTP 404" in missing.words


def test_mllp_connects_and_failures_are_words() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        ok = check_node(
            RemoteNode("ris", protocol="mllp", host="127.0.0.1", port=port, role="ris"), "X"
        )
    assert ok.ok and "accepts connections" in ok.words
    closed = free_port()
    refused = check_node(
        RemoteNode("ris", protocol="mllp", host="127.0.0.1", port=closed, role="ris"), "X"
    )
    assert not refused.ok and f"127.0.0.1:{closed}" in refused.words
    web = check_node(
        RemoteNode("web", protocol="http", url=f"http://127.0.0.1:{closed}/"), "X", timeout=3
    )
    assert not web.ok and "no answer from" in web.words
    dicom = check_node(RemoteNode("pacs", "PACS", "127.0.0.1", closed), "X", timeout=3)
    assert not dicom.ok and "C-ECHO to PACS@127.0.0.1" in dicom.words
