"""``report.html``: one self-contained page per run (styles, script and plots inline; nothing loads from
the network), built from the run folder alone by one renderer.

``write_html_report(run_dir)`` reads the folder (``run_view``), draws the stage graph (``graph``) and each
stage's report data (``sections``, ``plots``: what components return from ``report_data``) into the page
(``page``). ``recipe run`` writes it after every run; ``recipe report RUN`` writes it again.
"""

from __future__ import annotations

import re
from pathlib import Path

from registry.atomic import atomic_write_text
from registry.secrets import redact
from runner.report_html.page import render_page
from runner.report_html.run_view import LAST_RUN, read_run

__all__ = ["LAST_RUN", "REPORT_FILE", "build_html", "write_html_report"]

REPORT_FILE = "report.html"
# control characters (a random model's output has them) are not allowed in an HTML document
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def build_html(run_dir: Path, statuses: dict[str, str] | None = None, error: str | None = None) -> str:
    """The report page of the run in ``run_dir`` (secrets masked)."""
    return _CONTROL.sub("\ufffd", redact(render_page(read_run(Path(run_dir), statuses, error))))


def write_html_report(run_dir: Path, statuses: dict[str, str] | None = None, error: str | None = None) -> Path:
    """Write ``run_dir/report.html``; returns its path."""
    path = Path(run_dir) / REPORT_FILE
    atomic_write_text(path, build_html(run_dir, statuses, error))
    return path
