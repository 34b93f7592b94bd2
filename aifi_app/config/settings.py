"""Every setting of the appliance, declared once: type, default and description.

The settings file is TOML. Each dataclass below is one table of that file; each field is
one key, with its description in ``metadata["doc"]``. :func:`settings_reference` renders
the declarations as the Markdown table in README.md, and a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


def default_data_dir() -> Path:
    """Where the database, spool and logs live when no data directory is configured."""
    if sys.platform == "win32":
        base = os.environ.get("PROGRAMDATA", r"C:\ProgramData")
        return Path(base) / "AIFI Appliance"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "aifi-appliance"


class NodeUnusableError(ValueError):
    """A runner's remote node is missing from the settings or has the wrong protocol."""


@dataclass(frozen=True)
class NodeSettings:
    """The appliance's own DICOM node (table ``[node]``)."""

    ae_title: str = field(default="AIFI", metadata=_doc("AE title of the appliance's DICOM node."))
    port: int = field(
        default=11112, metadata=_doc("TCP port the DICOM node listens on (0: any free port).")
    )
    bind_address: str = field(
        default="127.0.0.1",
        metadata=_doc(
            "Address to listen on. 127.0.0.1 accepts local peers only; use 0.0.0.0 (or the "
            "workstation's address) to accept modalities and PACS on the network."
        ),
    )
    allowed_calling_ae_titles: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Calling AE titles that may associate (C-ECHO, C-STORE). Any other calling AE "
            "title is rejected at association time. Remote nodes are allowed as well."
        ),
    )
    calling_ae_addresses: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            'Ties calling AE titles to IP addresses or networks, entries "AET@10.1.2.3" or '
            '"AET@10.1.0.0/16": a title listed here may associate only from one of its '
            "addresses (others are rejected and audited); titles not listed from anywhere."
        ),
    )
    tls_port: int = field(
        default=0,
        metadata=_doc(
            "Port of the DICOM TLS listener (2762 is DICOM's well-known TLS port); 0: no TLS "
            "listener. Needs tls_certificate_file and tls_key_file."
        ),
    )
    plain_tcp: bool = field(
        default=True,
        metadata=_doc(
            "Whether the plain-TCP listener on port runs; false accepts DICOM over TLS only."
        ),
    )
    tls_certificate_file: str = field(
        default="",
        metadata=_doc(
            "The appliance's certificate (PEM, with its chain) for the TLS listener and as "
            "client certificate of outgoing DICOM TLS associations."
        ),
    )
    tls_key_file: str = field(
        default="",
        metadata=_doc(
            "Its private key (PEM), readable only by the service account. A passphrase, if "
            "any, is read from the OS keyring entry 'tls-key-passphrase'."
        ),
    )
    tls_ca_file: str = field(
        default="",
        metadata=_doc(
            "CA certificates (PEM) that TLS clients' certificates must chain to; empty: the "
            "system's trust store."
        ),
    )
    tls_require_client_certificate: bool = field(
        default=True,
        metadata=_doc(
            "Refuse TLS clients without a verified certificate (mutual authentication); false "
            "makes a client certificate optional (still verified when sent)."
        ),
    )
    max_pdu_size: int = field(
        default=131072, metadata=_doc("Maximum PDU size the node receives, in bytes.")
    )
    network_timeout_seconds: float = field(
        default=60.0,
        metadata=_doc("An association that sends nothing for this long is aborted."),
    )
    receive_processes: int = field(
        default=2,
        metadata=_doc(
            "Receiver processes that serve the plain-TCP associations (their PDUs, writes, "
            "checksums and queue records run outside the service's process, on every core); "
            "0 serves each association on a thread of the service. TLS associations, and all "
            "on Windows, are served in the service."
        ),
    )
    receive_first_in_process: bool = field(
        default=True,
        metadata=_doc(
            "With receive_processes: an association that arrives while the service serves "
            "none itself is served in the service (no hand-over), only concurrent ones in "
            "the receiver processes."
        ),
    )


@dataclass(frozen=True)
class RemoteNode:
    """A remote node (array of tables ``[[remote_nodes]]``): a PACS, a vendor or a RIS.

    How it is reached is its ``protocol``: ``dicom`` (AE title, host and port), ``dicomweb``
    and ``http`` (a base URL), ``mllp`` (HL7 v2 over MLLP: host and port).
    """

    name: str = field(metadata=_doc("Name used to refer to the node elsewhere in the file."))
    ae_title: str = field(default="", metadata=_doc("The node's AE title (protocol dicom)."))
    host: str = field(
        default="", metadata=_doc("Host name or IP address (protocols dicom and mllp).")
    )
    port: int = field(default=0, metadata=_doc("TCP port (protocols dicom and mllp)."))
    role: str = field(default="pacs", metadata=_doc("What the node is: pacs, vendor or ris."))
    protocol: str = field(
        default="dicom",
        metadata=_doc("How the node is reached: dicom, dicomweb, http or mllp."),
    )
    url: str = field(
        default="",
        metadata=_doc(
            "Base URL (protocols dicomweb and http), e.g. https://vendor.example/dicom-web."
        ),
    )
    tls: bool = field(
        default=False,
        metadata=_doc(
            "Protocol dicom: associate over DICOM TLS (the node's certificate verified, ours "
            "sent when node.tls_certificate_file is set)."
        ),
    )
    ca_file: str = field(
        default="",
        metadata=_doc(
            "CA certificates (PEM) the node's certificate must chain to (DICOM TLS and "
            "https); empty: the system's trust store. Certificates are always verified. A "
            "bearer token, if the node needs one, is kept in the OS keyring: "
            "'aifi-app nodes set-token NAME'."
        ),
    )
    allow_plain_http: bool = field(
        default=False,
        metadata=_doc(
            "Allow an http:// URL to a host other than this machine (unencrypted, "
            "unverified); every use is audited. Off: only https://, or http:// to loopback."
        ),
    )


@dataclass(frozen=True)
class CompletionSettings:
    """When a study counts as complete (table ``[completion]``)."""

    idle_seconds: float = field(
        default=30.0,
        metadata=_doc(
            "A study is complete when no instance of it arrived for this many seconds. "
            "While the association that sends it is open, a shorter time waits until it "
            "ends (at most 10 s after the last instance), so a pause does not split a "
            "study. A route may set its own. 'aifi-app process-now' skips the wait."
        ),
    )
    late_instance_policy: str = field(
        default="follow_up",
        metadata=_doc(
            "What instances that arrive after their study was processed do: follow_up (a "
            "new job on the late instances), reprocess (a new job on the whole study) or "
            "record (kept and shown, not processed)."
        ),
    )
    pseudonymise_while_receiving: bool = field(
        default=True,
        metadata=_doc(
            "Pseudonymise a study's instances in the background (a low-priority process) "
            "while the study still arrives, for the algorithms its routes will probably "
            "send it to, so that its job starts from finished work."
        ),
    )
    small_study_lane_images: int = field(
        default=20,
        metadata=_doc(
            "Jobs of studies with at most this many images (a radiograph, a mammogram) "
            "also have a worker lane of their own, so that they never wait behind a large "
            "study's model (a CT's takes seconds); 0: one lane for every job."
        ),
    )


@dataclass(frozen=True)
class Route:
    """A routing rule (array of tables ``[[routes]]``): which studies go to an algorithm.

    Every criterion that is set must hold for at least one series of the study; criteria
    left empty match anything.
    """

    name: str = field(metadata=_doc("Name shown in the queue and audit log."))
    algorithm: str = field(metadata=_doc("Id of the algorithm package the route feeds."))
    modalities: tuple[str, ...] = field(
        default=(), metadata=_doc('Modality (0008,0060) values, e.g. ["CR", "DX"].')
    )
    body_parts: tuple[str, ...] = field(
        default=(),
        metadata=_doc("Body Part Examined (0018,0015) values; a series without one matches."),
    )
    study_description: str = field(
        default="", metadata=_doc("Regular expression searched in Study Description.")
    )
    series_description: str = field(
        default="", metadata=_doc("Regular expression searched in Series Description.")
    )
    min_patient_age_years: float | None = field(
        default=None, metadata=_doc("Lowest patient age (from Patient's Age or birth date).")
    )
    max_patient_age_years: float | None = field(default=None, metadata=_doc("Highest patient age."))
    min_slice_thickness_mm: float | None = field(
        default=None, metadata=_doc("Thinnest Slice Thickness (0018,0050) accepted.")
    )
    max_slice_thickness_mm: float | None = field(
        default=None, metadata=_doc("Thickest Slice Thickness accepted.")
    )
    convolution_kernels: tuple[str, ...] = field(
        default=(),
        metadata=_doc("Accepted Convolution Kernel (0018,1210) values (case-insensitive)."),
    )
    idle_seconds: float | None = field(
        default=None, metadata=_doc("Completion idle time for studies this route may take.")
    )


BUILTIN_ROUTES: tuple[Route, ...] = (
    Route(
        name="chest-xray-pneumonia",
        algorithm="pneumonia-cxr",
        modalities=("CR", "DX"),
        body_parts=("CHEST",),
    ),
)
"""Used when the settings file has no ``routes`` key (``routes = []`` means none)."""


@dataclass(frozen=True)
class DeliverySettings:
    """Sending results to the PACS (table ``[delivery]``)."""

    pacs: str = field(
        default="",
        metadata=_doc("Name of the remote node that receives results; empty: none (results wait)."),
    )
    calling_ae_title: str = field(
        default="", metadata=_doc("Calling AE title for sending; empty: the node's AE title.")
    )
    retry_initial_seconds: float = field(
        default=5.0, metadata=_doc("Wait before the first retry after a failed send.")
    )
    retry_max_seconds: float = field(
        default=300.0, metadata=_doc("The wait between retries doubles up to this bound.")
    )
    give_up_after_hours: float = field(
        default=24.0,
        metadata=_doc("A result still not delivered after this long fails (one-click retry)."),
    )
    timeout_seconds: float = field(
        default=60.0, metadata=_doc("Network timeout of one send (connect, DIMSE, ACSE).")
    )
    node_check_seconds: float = field(
        default=300.0,
        metadata=_doc(
            "Every this many seconds each DICOM remote node is tested with C-ECHO, for its "
            "availability figures; 0: only real deliveries and submissions count."
        ),
    )


@dataclass(frozen=True)
class StorageSettings:
    """Where data lives and how long (table ``[storage]``)."""

    data_dir: str = field(
        default="",
        metadata=_doc(
            "Directory for the database, spool, results and logs; empty: the platform default "
            "(Linux ~/.local/share/aifi-appliance, Windows %PROGRAMDATA%\\AIFI Appliance)."
        ),
    )
    retention_days: float = field(
        default=7.0,
        metadata=_doc(
            "Received images of studies whose every job is finished are removed from the "
            "spool after this many days, and the text of HL7 messages sent or failed that "
            "long ago (it holds patient identifiers); 0 keeps them forever. Queue and audit "
            "entries stay."
        ),
    )
    min_free_mb: float = field(
        default=500.0,
        metadata=_doc(
            "Free-space floor of the data volume in MB: below it new associations are refused "
            "(transient, local limit exceeded) and C-STOREs answered Out of Resources (0xA700); "
            "status and the GUI warn. 0 turns this bound off."
        ),
    )
    min_free_percent: float = field(
        default=0.0,
        metadata=_doc(
            "The same floor as a percentage of the data volume; the larger of the two applies."
        ),
    )


@dataclass(frozen=True)
class AlgorithmSettings:
    """Where algorithm packages come from (table ``[algorithms]``)."""

    package_dirs: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Extra directories holding algorithm packages, besides the built-in ones and "
            "those installed with 'aifi-app algorithms install' (in the data directory)."
        ),
    )
    onnx_threads: int = field(
        default=0,
        metadata=_doc("Threads within one ONNX Runtime operator (intra-op); 0 lets it choose."),
    )
    onnx_inter_op_threads: int = field(
        default=1,
        metadata=_doc("Threads running independent ONNX Runtime operators in parallel."),
    )
    onnx_providers: tuple[str, ...] = field(
        default=("CUDAExecutionProvider", "DmlExecutionProvider", "CPUExecutionProvider"),
        metadata=_doc(
            "ONNX Runtime execution providers in order of preference; those this machine "
            "lacks are skipped, and the CPU is always the last resort."
        ),
    )
    trusted_vendor_keys: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Ed25519 public keys (base64 of the 32 raw bytes) of vendors whose package "
            "signatures are trusted. A signed package no trusted key verifies is refused."
        ),
    )
    signed_packages_only: bool = field(
        default=False,
        metadata=_doc(
            "Refuse to install or load packages not signed by a trusted vendor key "
            "(built-in packages excepted)."
        ),
    )


@dataclass(frozen=True)
class RisSettings:
    """HL7 v2 messages over MLLP to the RIS (table ``[ris]``): a result (ORU^R01) per
    job, and an order-priority change (OMG^O19) for findings a manifest marks urgent."""

    node: str = field(
        default="",
        metadata=_doc(
            "Name of the remote node (role ris, protocol mllp) that receives HL7 messages; "
            "empty: no HL7 is sent."
        ),
    )
    sending_application: str = field(
        default="AIFI", metadata=_doc("MSH-3 Sending Application of our messages.")
    )
    sending_facility: str = field(
        default="", metadata=_doc("MSH-4 Sending Facility, e.g. the hospital's code.")
    )
    receiving_application: str = field(
        default="", metadata=_doc("MSH-5 Receiving Application (the RIS), as it expects.")
    )
    receiving_facility: str = field(default="", metadata=_doc("MSH-6 Receiving Facility."))
    ack_timeout_seconds: float = field(
        default=30.0,
        metadata=_doc("Wait this long for the RIS's ACK (and to connect) before retrying."),
    )
    max_attempts: int = field(
        default=5,
        metadata=_doc(
            "A message not acknowledged with AA after this many attempts fails (shown in "
            "the queue and audit log; 'aifi-app retry' sends it again)."
        ),
    )
    retry_initial_seconds: float = field(
        default=10.0, metadata=_doc("Wait before the first resend of an unacknowledged message.")
    )
    retry_max_seconds: float = field(
        default=600.0, metadata=_doc("The wait between resends doubles up to this bound.")
    )


@dataclass(frozen=True)
class Settings:
    """The whole settings file."""

    node: NodeSettings = field(default_factory=NodeSettings)
    remote_nodes: tuple[RemoteNode, ...] = ()
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    routes: tuple[Route, ...] = BUILTIN_ROUTES
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    algorithms: AlgorithmSettings = field(default_factory=AlgorithmSettings)
    ris: RisSettings = field(default_factory=RisSettings)

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir) if self.storage.data_dir else default_data_dir()

    def remote_node(self, name: str) -> RemoteNode | None:
        return next((n for n in self.remote_nodes if n.name == name), None)

    def remote_node_of(self, name: str, protocol: str) -> RemoteNode:
        """The remote node a package's runner names; :class:`NodeUnusableError` (reason
        in words) when there is none of that name or it speaks another protocol."""
        node = self.remote_node(name)
        if node is None:
            raise NodeUnusableError(f"no remote node named {name!r} in the settings")
        if node.protocol != protocol:
            article = "an" if protocol in ("http", "mllp") else "a"
            raise NodeUnusableError(
                f"remote node {name!r} has protocol {node.protocol};"
                f" this package needs {article} {protocol} node"
            )
        return node

    @property
    def pacs_node(self) -> RemoteNode | None:
        return self.remote_node(self.delivery.pacs) if self.delivery.pacs else None

    @property
    def ris_node(self) -> RemoteNode | None:
        return self.remote_node(self.ris.node) if self.ris.node else None


SECTIONS: dict[str, type[Any]] = {
    "node": NodeSettings,
    "completion": CompletionSettings,
    "delivery": DeliverySettings,
    "storage": StorageSettings,
    "algorithms": AlgorithmSettings,
    "ris": RisSettings,
}
ARRAYS: dict[str, type[Any]] = {"remote_nodes": RemoteNode, "routes": Route}


def settings_reference() -> str:
    """The declared settings as a Markdown table (key, type, default, description)."""
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    tables: list[tuple[str, type[Any]]] = [
        *((name, cls) for name, cls in SECTIONS.items()),
        *((f"[{name}]", cls) for name, cls in ARRAYS.items()),
    ]
    for table, cls in tables:
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = repr(list(f.default) if isinstance(f.default, tuple) else f.default)
            else:
                default = "(required)"
            type_name = str(f.type).replace("tuple[str, ...]", "list[str]")
            lines.append(
                f"| `{table}.{f.name}` | {type_name} | `{default}` | {f.metadata['doc']} |"
            )
    return "\n".join(lines)
