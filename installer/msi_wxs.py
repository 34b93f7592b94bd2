"""The WiX source (``.wxs``) of the MSI, generated from the payload folder.

Written for Debian's ``wixl`` (msitools), which compiles a subset of WiX 3: Product,
Package, MajorUpgrade, Directory, Component, File, Shortcut, RegistryValue,
RegistrySearch, Property, CustomAction, InstallExecuteSequence, ServiceInstall and
ServiceControl are in it; extensions (util:RemoveFolderEx, util:PermissionEx) and
SetProperty are not, hence the plain custom actions below. The same file builds with
the WiX Toolset 3 (``candle`` + ``light``) on a Windows build agent.

Identifiers and component GUIDs are derived from the install path, so that they stay the
same from one version to the next (the component rules), and the UpgradeCode is fixed
for the product's life: every build replaces the one installed (a major upgrade).
"""

from __future__ import annotations

import hashlib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PRODUCT = "AIFI Appliance"
MANUFACTURER = "AIFI Appliance developers"
# never change: Windows Installer knows the product by it across versions
UPGRADE_CODE = "{6F1C8D0E-3B0A-4B8E-9C5E-2A6B1F4D7E31}"
_COMPONENT_NAMESPACE = uuid.UUID("0b7e2f8a-6c43-4f0e-93a1-5d2c8e4b9f60")
REGISTRY_KEY = r"SOFTWARE\AIFI Appliance"
SERVICE_NAME = "AIFIAppliance"
SERVICE_HOST = PurePosixPath("runtime/aifi-service.exe")
WIX_NS = "http://schemas.microsoft.com/wix/2006/wi"

# silent-install properties the appliance reads (aifi_app/config/installer_values.py);
# each is remembered in the registry so that an upgrade without it keeps the value
REMEMBERED = {"DICOM_PORT": "DicomPort", "AE_TITLE": "AeTitle", "INSTALL_SERVICE": "Service"}
REMOVE_DATA_CONDITION = 'REMOVE~="ALL" AND REMOVE_DATA="1" AND NOT UPGRADINGPRODUCTCODE'
SERVICE_CONDITION = 'INSTALL_SERVICE="1"'
SERVICE_COMPONENT_KEY = "service/host"


@dataclass(frozen=True)
class WxsOptions:
    version: str  # MSI ProductVersion, major.minor.build
    payload: Path  # relative to the .wxs file's folder (wixl takes no absolute Source)
    with_service: bool = True


def _ident(prefix: str, path: PurePosixPath | str) -> str:
    digest = hashlib.sha1(str(path).lower().encode("utf-8"), usedforsecurity=False)
    return f"{prefix}{digest.hexdigest()[:32]}"


def _guid(key: str) -> str:
    return "{" + str(uuid.uuid5(_COMPONENT_NAMESPACE, key.lower())).upper() + "}"


def _sub(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})


def generate(opts: WxsOptions, files: list[PurePosixPath]) -> str:
    """The WiX source for ``files`` (relative to the payload) as a string."""
    ET.register_namespace("", WIX_NS)
    wix = ET.Element("Wix", {"xmlns": WIX_NS})
    product = _sub(
        wix, "Product", Id="*", Name=PRODUCT, Language="1033", Version=opts.version,
        Manufacturer=MANUFACTURER, UpgradeCode=UPGRADE_CODE,
    )  # fmt: skip
    _sub(
        product, "Package", InstallerVersion="500", Compressed="yes", InstallScope="perMachine",
        Manufacturer=MANUFACTURER,
        Description=f"{PRODUCT} {opts.version}",
        Comments="Radiology AI chain: DICOM node, pseudonymisation, AI, results to PACS.",
    )  # fmt: skip
    _sub(
        product, "MajorUpgrade",
        DowngradeErrorMessage=f"A newer version of {PRODUCT} is already installed.",
    )  # fmt: skip
    _sub(product, "Media", Id="1", Cabinet="payload.cab", EmbedCab="yes")
    # wixl writes ALLUSERS=1 itself for InstallScope="perMachine"
    _sub(product, "Property", Id="ARPNOMODIFY", Value="1")
    _sub(product, "Property", Id="REMOVE_DATA", Value="0")
    # wixl places Custom actions given After/Before at the end of the sequence: explicit
    # numbers instead (AppSearch is 50, InstallFinalize 6600 in wixl's standard sequence)
    seq = _sub(product, "InstallExecuteSequence")
    for i, (prop, value_name) in enumerate(REMEMBERED.items()):
        saved = _sub(product, "Property", Id=f"SAVED_{prop}")
        _sub(
            saved, "RegistrySearch", Id=f"Find{value_name}", Root="HKLM", Key=REGISTRY_KEY,
            Name=value_name, Type="raw", Win64="yes",
        )  # fmt: skip
        _sub(product, "CustomAction", Id=f"Restore{value_name}", Property=prop,
             Value=f"[SAVED_{prop}]")  # fmt: skip
        custom = _sub(seq, "Custom", Action=f"Restore{value_name}", Sequence=str(51 + i))
        custom.text = f"NOT {prop} AND SAVED_{prop}"
    # REMOVE_DATA=1 on uninstall (not on the uninstall that an upgrade does): the data
    # folder goes too. No util:RemoveFolderEx in wixl, so cmd's rmdir (type 50 action)
    _sub(product, "CustomAction", Id="SetCmdPath", Property="CMD_EXE",
         Value="[System64Folder]cmd.exe")  # fmt: skip
    _sub(seq, "Custom", Action="SetCmdPath", Sequence="60")
    _sub(
        product, "CustomAction", Id="RemoveProgramData", Property="CMD_EXE",
        ExeCommand=f'/c rmdir /s /q "[CommonAppDataFolder]{PRODUCT}"',
        Execute="deferred", Impersonate="no", Return="ignore",
    )  # fmt: skip
    custom = _sub(seq, "Custom", Action="RemoveProgramData", Sequence="6590")
    custom.text = REMOVE_DATA_CONDITION

    target = _sub(product, "Directory", Id="TARGETDIR", Name="SourceDir")
    program_files = _sub(target, "Directory", Id="ProgramFiles64Folder")
    install_dir = _sub(program_files, "Directory", Id="INSTALLDIR", Name=PRODUCT)
    menu = _sub(target, "Directory", Id="ProgramMenuFolder")
    feature = _sub(product, "Feature", Id="Main", Title=PRODUCT, Level="1")

    dirs: dict[PurePosixPath, ET.Element] = {PurePosixPath("."): install_dir}

    def directory(rel: PurePosixPath) -> ET.Element:
        if rel not in dirs:
            parent = directory(rel.parent)
            dirs[rel] = _sub(parent, "Directory", Id=_ident("d", rel), Name=rel.name)
        return dirs[rel]

    def component(parent: ET.Element, key: str) -> ET.Element:
        comp_id = _ident("c", key)
        comp = _sub(parent, "Component", Id=comp_id, Guid=_guid(key), Win64="yes")
        _sub(feature, "ComponentRef", Id=comp_id)
        return comp

    for rel in files:
        comp = component(directory(rel.parent), str(rel))
        _sub(
            comp, "File", Id=_ident("f", rel), Name=rel.name,
            Source=opts.payload.joinpath(*rel.parts).as_posix(), KeyPath="yes",
        )  # fmt: skip

    # what the silent install was given, for the appliance (and the next upgrade) to read
    settings = component(install_dir, "registry/installer-values")
    _sub(
        settings, "RegistryValue", Root="HKLM", Key=REGISTRY_KEY, Name="InstallDir",
        Type="string", Value="[INSTALLDIR]", KeyPath="yes",
    )  # fmt: skip
    _sub(settings, "RegistryValue", Root="HKLM", Key=REGISTRY_KEY, Name="Version",
         Type="string", Value=opts.version)  # fmt: skip
    for prop, value_name in REMEMBERED.items():
        _sub(settings, "RegistryValue", Root="HKLM", Key=REGISTRY_KEY, Name=value_name,
             Type="string", Value=f"[{prop}]")  # fmt: skip

    shortcut = component(menu, "shortcut/start-menu")
    _sub(
        shortcut, "Shortcut", Id="StartMenuShortcut", Name=PRODUCT,
        Description="Radiology AI appliance: queue, results, settings",
        Target="[INSTALLDIR]runtime\\pythonw.exe", Arguments="-m aifi_app gui",
        WorkingDirectory="INSTALLDIR",
    )  # fmt: skip
    _sub(
        shortcut, "RegistryValue", Root="HKLM", Key=REGISTRY_KEY, Name="StartMenuShortcut",
        Type="integer", Value="1", KeyPath="yes",
    )  # fmt: skip

    if opts.with_service:
        _service(component, directory, opts)

    ET.indent(wix)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(wix, encoding="unicode")


def _service(
    component: Callable[[ET.Element, str], ET.Element],
    directory: Callable[[PurePosixPath], ET.Element],
    opts: WxsOptions,
) -> None:
    """The optional Windows service (``INSTALL_SERVICE=1``): ``aifi-app serve`` headless.

    Its executable is a copy of the runtime's python.exe under its own name (a service's
    binary must be the key file of its component); it runs
    ``aifi_app.windows_service``, which speaks the Service Control Manager's protocol.
    """
    comp = component(directory(SERVICE_HOST.parent), SERVICE_COMPONENT_KEY)
    _sub(
        comp, "File", Id="ServiceHost", Name=SERVICE_HOST.name,
        Source=(opts.payload / "runtime" / "python.exe").as_posix(), KeyPath="yes",
    )  # fmt: skip
    _sub(
        comp, "ServiceInstall", Id="AppService", Name=SERVICE_NAME, DisplayName=PRODUCT,
        Description="AIFI Appliance headless (aifi-app serve): DICOM node, AI, results",
        Type="ownProcess", Start="auto", ErrorControl="normal", Account="LocalSystem",
        Arguments="-m aifi_app.windows_service",
    )  # fmt: skip
    _sub(
        comp, "ServiceControl", Id="AppServiceControl", Name=SERVICE_NAME,
        Start="install", Stop="both", Remove="uninstall", Wait="yes",
    )  # fmt: skip


def post_build_queries(with_service: bool) -> list[str]:
    """SQL that ``msibuild -q`` runs on wixl's output, for what wixl cannot write.

    wixl has no Component/Condition: the service's component gets its condition here.
    The silent-install properties are made secure, so that they reach the elevated
    server side of a per-machine install however they were set.
    """
    secure = ";".join(
        ["WIX_DOWNGRADE_DETECTED", "WIX_UPGRADE_DETECTED", *REMEMBERED, "REMOVE_DATA"]
    )
    # the values are this module's constants, not input
    queries = [f"UPDATE Property SET Value = '{secure}' WHERE Property = 'SecureCustomProperties'"]  # noqa: S608
    if with_service:
        comp_id = _ident("c", SERVICE_COMPONENT_KEY)
        condition = SERVICE_CONDITION.replace("'", "''")
        queries.append(
            f"UPDATE Component SET Condition = '{condition}' WHERE Component = '{comp_id}'"  # noqa: S608
        )
    return queries
