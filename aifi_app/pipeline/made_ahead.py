"""What the pre-pseudonymiser's child made for a job, read back by the worker: its bytes
and, written last, a description naming the request it was made for and their SHA-256
(:mod:`aifi_app.pipeline.seg_ahead`: a SEG's skeleton, the SR's evidence;
:mod:`aifi_app.pipeline.sr_in_child`: the SR). Thread: any.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def made_for(
    key: str, data: Path, description: Path, *, missing: str
) -> tuple[dict[str, Any], bytes] | str:
    """What the child made (its description, then its bytes) when it was made for
    ``key`` and is whole, or why it cannot be used (in words; ``missing``: none there)."""
    try:
        about = json.loads(description.read_bytes())
        made = data.read_bytes()
    except FileNotFoundError:
        return missing
    except (OSError, ValueError) as exc:
        return f"unreadable ({type(exc).__name__})"
    if about.get("key") != key:
        return "made for another request"
    if about.get("sha256") != hashlib.sha256(made).hexdigest():
        return "incomplete"
    return about, made
