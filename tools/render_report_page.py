"""Render the first page of an evaluation report to PNG, for the README.

The report comes from the synthetic data set the report tests use
(tests/helpers/evaluation_data.py: nine jobs of two algorithms, verdicts, service and
node events). The page is rendered by Chromium's headless shell (Debian package
``chromium-headless-shell``), at 1200 x 1500 CSS pixels: what a browser shows first.

    python tools/render_report_page.py docs/report-first-page.png
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aifi_app.cli import main as aifi_app  # noqa: E402
from aifi_app.service import open_database  # noqa: E402
from tests.helpers import evaluation_data  # noqa: E402


def render(target: Path, browser: str = "chromium-headless-shell") -> None:
    exe = shutil.which(browser) or shutil.which("chromium")
    if exe is None:
        raise SystemExit("needs chromium-headless-shell (apt install chromium-headless-shell)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = open_database(root / "data")
        evaluation_data.populate(db)
        db.close()
        out = root / "report"
        first, last = evaluation_data.FIRST_DAY, evaluation_data.LAST_DAY
        code = aifi_app(
            ["report", "--data-dir", str(root / "data"), "--from", first.isoformat(),
             "--to", last.isoformat(), "--out", str(out)]
        )  # fmt: skip
        if code:
            raise SystemExit(code)
        shot = root / "page.png"
        subprocess.run(
            [exe, "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1200,1500", f"--screenshot={shot}",
             (out / "report.html").as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    print(f"wrote {target}")


if __name__ == "__main__":
    render(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report-first-page.png"))
