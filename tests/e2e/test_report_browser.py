"""The LongCite recipe's `tiny` run's report.html in headless Chromium: it loads with the network off and
nothing outside the file, logs no error, and clicking a statement highlights the sentences it cites.

Needs Debian's `chromium` (`apt-get install chromium`; `.ci/run` installs it) and the Python `playwright`
package (the `test` extra); Playwright drives the system browser, it downloads none.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
MAX_BYTES = 3 * 2**20
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> str:
    exe = next((p for p in map(shutil.which, BROWSERS) if p), None)
    if exe is None:
        pytest.skip("no browser: install Debian's chromium package (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is missing: pip install -e '.[test]'")
    return exe


@pytest.fixture(scope="module")
def longcite_run(tmp_path_factory) -> tuple[Path, str]:
    """The run folder and the browser to open its report with."""
    import os

    exe = _browser()  # skip before the run when no browser can be had
    import torch

    from runner.load import load_recipe
    from runner.session import run_recipe

    home = tmp_path_factory.mktemp("zoo-home")
    old_home, old_threads = os.environ.get("RECIPE_ZOO_HOME"), torch.get_num_threads()
    os.environ["RECIPE_ZOO_HOME"] = str(home)  # published models register here, not in the user's zoo
    torch.set_num_threads(1)
    try:
        runs = tmp_path_factory.mktemp("runs")
        run_recipe(load_recipe(RECIPES / "longcite.yaml", profile="tiny"), runs, progress=False, publish=False)
    finally:
        torch.set_num_threads(old_threads)
        if old_home is None:
            os.environ.pop("RECIPE_ZOO_HOME", None)
        else:
            os.environ["RECIPE_ZOO_HOME"] = old_home
    return runs / "longcite", exe


def _first_citation(root: Path) -> tuple[str, int, int, str]:
    """The first cited statement of the first CoF training record, its range and the first cited sentence,
    read from the record's own text (the prompt's numbered document and the cited answer)."""
    latest = json.loads((root / "latest.json").read_text())["stages"]
    first = json.loads((root / latest["filtered"] / "records.jsonl").read_text().splitlines()[0])
    user, answer = first["messages"][0]["content"], first["messages"][1]["content"]
    m = re.search(r"<statement>([^<]*)<cite>\[(\d+)-(\d+)\]", answer)
    assert m, answer
    a, b = int(m.group(2)), int(m.group(3))
    doc = user.split("[Document Start]", 1)[1].split("[Document End]", 1)[0]
    sentence = re.search(rf"<C{a}>(.*?)(?=<C\d+>|$)", doc, re.DOTALL).group(1)
    return m.group(1).strip(), a, b, sentence.strip()


def test_longcite_report_opens_offline_and_a_clicked_statement_highlights_its_cited_sentences(
        longcite_run, tmp_path):
    from playwright.sync_api import sync_playwright

    root, exe = longcite_run
    page_file = root / "report.html"
    assert page_file.stat().st_size < MAX_BYTES
    statement, a, b, sentence = _first_citation(root)
    errors: list[str] = []
    failed: list[str] = []
    outside: list[str] = []
    requests: list[str] = []

    def route(r) -> None:
        if r.request.url.startswith(("file:", "data:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")
            viewer = page.locator("#stage-filtered .example").first
            span = viewer.locator(".span.item", has_text=re.compile("^" + re.escape(statement) + "$")).first
            span.click()
            lit = viewer.locator(".span.hl")
            assert lit.locator(".num").all_inner_texts() == [str(i) for i in range(a, b + 1)]
            assert " ".join(sentence.split()) in " ".join(lit.first.inner_text().split())
            assert "active" in span.get_attribute("class")
            assert viewer.locator(".detail").is_visible()
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            # the uncited filter dims the cited statement
            page.locator("#stage-filtered input.filter[value=uncited]").check()
            assert "dim" in span.get_attribute("class")
        finally:
            browser.close()
    assert errors == [] and failed == [] and outside == []
    assert requests and all(u.startswith(("file:", "data:")) for u in requests)
    assert (tmp_path / "report.png").stat().st_size > 10_000
