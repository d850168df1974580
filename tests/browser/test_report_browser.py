"""The report in a real headless Chromium with the network blocked: every chart draws."""

import shutil

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def page_of(tiny_study, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors, blocked = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        def route(r):
            if r.request.url.startswith("file:"):
                r.continue_()
            else:
                blocked.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.goto((tiny_study / "results/report/index.html").as_uri())
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.chart')).every(d => d.querySelector('svg'))",
            timeout=30000,
        )
        shot = tmp_path_factory.mktemp("shot") / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        yield page, errors, blocked, shot
        browser.close()


def test_every_chart_draws_offline(page_of):
    page, errors, blocked, shot = page_of
    marks = page.evaluate(
        """Array.from(document.querySelectorAll('.chart')).map(d => [d.id,
            d.querySelectorAll('svg .mark-line path, svg .mark-symbol path, svg .mark-rect path,'
              + ' svg .mark-text text, svg .mark-arc path').length])"""
    )
    assert len(marks) >= 9
    for chart_id, count in marks:
        assert count >= 2, f"{chart_id} drew {count} marks"
    assert errors == [] and blocked == []
    assert shot.stat().st_size > 50_000
    # every section keeps its heading and text once the charts are drawn (a chart drawn into an
    # element that shares its id would replace the section)
    sections = page.evaluate(
        "Array.from(document.querySelectorAll('section')).map(s => [s.id, s.querySelector('h2') !== null])"
    )
    assert len(sections) >= 12 and all(has_heading for _, has_heading in sections), sections


def test_heatmap_marks_diverged_cells(page_of):
    page = page_of[0]
    texts = page.evaluate(
        "Array.from(document.querySelectorAll('#accuracy-heatmap svg .mark-text.role-mark text')).map(t => t.textContent)"
    )
    assert sum("div." in t for t in texts) == 2
    assert sum(t.replace(".", "").isdigit() for t in texts) == 2


def test_version_stamp_is_visible(page_of):
    page = page_of[0]
    stamp = page.inner_text("#version-stamp")
    assert "params hash" in stamp and "6bbc9ace898e44ae57da46a324031adb" in stamp
