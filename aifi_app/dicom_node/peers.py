"""DICOM links from the settings: remote nodes as :class:`Peer` (with TLS where set), and
the node's own TLS listener context."""

from __future__ import annotations

import ssl
from pathlib import Path

from aifi_app.config.settings import NodeSettings, RemoteNode
from aifi_app.dicom_node.storage_scu import AssociationFailed, Peer
from aifi_app.net.tls import TlsConfigError, TlsIdentity, client_context, server_context


def own_identity(node: NodeSettings) -> TlsIdentity | None:
    """The appliance's certificate and key, when configured."""
    if not node.tls_certificate_file or not node.tls_key_file:
        return None
    return TlsIdentity(Path(node.tls_certificate_file), Path(node.tls_key_file))


def listener_tls_context(node: NodeSettings) -> ssl.SSLContext | None:
    """The TLS listener's context, or None when no TLS port is set. Raises TlsConfigError."""
    identity = own_identity(node)
    if node.tls_port == 0 or identity is None:
        return None
    return server_context(
        identity,
        ca_file=Path(node.tls_ca_file) if node.tls_ca_file else None,
        require_client_certificate=node.tls_require_client_certificate,
    )


def dicom_peer(remote: RemoteNode, own: NodeSettings) -> Peer:
    """The remote node as a peer; with ``remote.tls`` its certificate is verified against
    ``remote.ca_file`` (or the system's store) and ours is sent.

    Raises :class:`AssociationFailed` when the TLS files cannot be used, so that the
    caller's "cannot reach the node" path shows the reason.
    """
    if not remote.tls:
        return Peer(remote.ae_title, remote.host, remote.port)
    try:
        context = client_context(
            ca_file=Path(remote.ca_file) if remote.ca_file else None,
            identity=own_identity(own),
        )
    except TlsConfigError as exc:
        raise AssociationFailed(f"TLS for {remote.name} cannot be set up: {exc}") from exc
    return Peer(remote.ae_title, remote.host, remote.port, tls=context)
