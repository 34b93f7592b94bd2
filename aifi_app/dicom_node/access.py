"""Which calling AE title may associate from which address.

The node's allow-list of calling AE titles is enforced by its acceptor
(:mod:`aifi_app.dicom_node.storage_acceptor`). On top of it a title can be tied to IP
addresses or networks (setting ``node.calling_ae_addresses``, entries ``"AET@address"`` or
``"AET@network/bits"``): a title with entries may call only from one of them; a title
without any may call from anywhere, as before. A spoofed AE title from the wrong machine
is then refused at association time, before any data is sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRuleError(ValueError):
    """An entry of ``calling_ae_addresses`` is not ``AET@address`` or ``AET@network``."""


def parse_address_rules(entries: Iterable[str]) -> dict[str, tuple[Network, ...]]:
    """``["CT1@10.1.2.3", "CT1@10.9.0.0/16"]`` -> ``{"CT1": (10.1.2.3/32, 10.9.0.0/16)}``."""
    rules: dict[str, list[Network]] = {}
    for entry in entries:
        title, sep, address = entry.rpartition("@")
        if not sep or not title.strip() or not address:
            raise AddressRuleError(f"{entry!r} is not AET@address or AET@network/bits")
        try:
            network = ipaddress.ip_network(address.strip(), strict=False)
        except ValueError as exc:
            raise AddressRuleError(
                f"{entry!r}: {address!r} is not an IP address or network"
            ) from exc
        rules.setdefault(title.strip(), []).append(network)
    return {title: tuple(networks) for title, networks in rules.items()}


class CallingAddressPolicy:
    """Refuses a calling AE title that has address rules and calls from elsewhere."""

    def __init__(self, rules: dict[str, tuple[Network, ...]]) -> None:
        self._rules = rules

    def __call__(self, calling_ae_title: str, address: str) -> str | None:
        """Why ``calling_ae_title`` may not call from ``address``, or None if it may."""
        networks = self._rules.get(calling_ae_title.strip())
        if not networks:
            return None
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"calling AE {calling_ae_title!r} from an unrecognised address {address!r}"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip.version == n.version and ip in n for n in networks):
            return None
        allowed = ", ".join(str(n) for n in networks)
        return f"calling AE {calling_ae_title!r} is allowed from {allowed} only, not from {address}"
