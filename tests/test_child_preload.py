"""What the fork server imports for its children, in a fresh interpreter: the modules
they run, and not the libraries only the service uses (a forked child shares the fork
server's pages, so whatever it imports is in the tree's memory for the appliance's life)."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
import aifi_app.child_preload
from aifi_app.child_preload import CHILD_MODULES
print(json.dumps({
    "children": [name in sys.modules for name in CHILD_MODULES],
    "service_only": {
        name: name in sys.modules for name in ("keyring", "jsonschema", "sqlite_utils")
    },
}))
"""


def test_the_fork_server_imports_its_childrens_modules_and_not_the_services_libraries() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(found["children"])
    # the secrets' keyring, the manifests' schema, sqlite-utils' queries: the service's
    assert found["service_only"] == {"keyring": False, "jsonschema": False, "sqlite_utils": False}
