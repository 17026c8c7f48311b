"""The HTML leaderboard in a real headless browser (Chromium through Playwright): sorting, filters,
the Pareto scatter's axes, provenance on demand, no console error, no network request, and
record text that stays text. Without Playwright or a Chromium the tests skip with the reason
(`make browser` installs both; CI requires them)."""

import json
import os
import shutil

import pytest
from test_leaderboard import add, hits

from peftbench.board import html
from peftbench.board.build import build
from peftbench.store import Store

HOSTILE = "<img src=x onerror=alert(1)>"
METHODS = ("lora", "hora", "dora", "vera")


def _chromium() -> str | None:
    given = os.environ.get("PEFTBENCH_CHROMIUM")
    return given or shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _browser_or_skip():
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Playwright is not installed (make browser)"
    else:
        if _chromium() is None:
            reason = "no Chromium found (make browser, or set PEFTBENCH_CHROMIUM)"
    if reason:
        if os.environ.get("PEFTBENCH_REQUIRE_BROWSER"):
            pytest.fail(reason + ", and PEFTBENCH_REQUIRE_BROWSER is set")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _browser_or_skip()
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield found
        found.close()


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """Four methods on two tasks, three seeds each, with distinct rates and memory; one more row whose
    method, hyper-parameter and task names are markup."""
    folder = tmp_path_factory.mktemp("page")
    store = Store(str(folder / "results.db"))
    rng = __import__("numpy").random.default_rng(0)
    order = rng.permutation(400)
    skill = {"lora": 300, "hora": 320, "dora": 310, "vera": 280, HOSTILE: 200}
    for i, method in enumerate(skill):
        for task in ("digits", "textures"):
            for seed in range(3):
                extra = {"hparams": {"lr": 1e-3, HOSTILE: 1}} if method == HOSTILE else {}
                add(store, "quick", task, method, seed, hits(400, skill[method] + 5 * seed, order),
                    trainable=100_000 + 10_000 * i, train_samples_per_s=50.0 + 7 * i,
                    eval_samples_per_s=200.0 - 9 * i, peak_memory_mb=300.0 + 11 * i, **extra)
    add(store, "other", HOSTILE, "lora", 0, hits(400, 300, order))  # a task named as markup, in a section of its own
    model = build(store, folder / "README.md")
    page = folder / "index.html"
    page.write_text(html.render(model, folder))
    return model, page


@pytest.fixture
def page(browser, board):
    """The page opened from disk; the test fails on any console error, page error, dialog or request
    other than the file itself."""
    tab = browser.new_page()
    tab.set_default_timeout(5_000)
    problems = []
    tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    url = board[1].as_uri()
    tab.on("request", lambda r: problems.append(f"request: {r.url}") if r.url != url else None)
    tab.goto(url)
    yield tab
    tab.close()
    assert problems == []


def _section(model, title="quick on dinov2-s"):
    return next(s for s in model.sections if s.title == title)


def _suite(page, title="quick on dinov2-s"):
    return page.locator("section.suite").filter(has=page.get_by_role("heading", name=title, exact=True))


def _visible_methods(table):
    return table.locator("tbody tr[data-method]:visible").evaluate_all("rows => rows.map(r => r.dataset.method)")


def test_sorting_a_column_orders_the_rows_by_its_numbers(page, board):
    scores = _section(board[0]).tables("scores")[0]
    mean = scores.columns.index("mean")
    expected = [row.method for row in sorted((r for r in scores.rows if r.method), key=lambda r: r.cells[mean].value)]
    table = _suite(page).locator("table[data-role=scores]")
    header = table.locator("th", has_text="mean")
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert _visible_methods(table) == expected
    header.locator("button").click()
    assert _visible_methods(table) == expected[::-1]
    # rows that are no method (the minimum detectable effect) stay below, whatever the order
    deltas = _suite(page).locator("table[data-role=deltas]")
    for _ in range(2):
        deltas.locator("th", has_text="mean").locator("button").click()
        assert "minimum detectable effect" in deltas.locator("tbody tr").last.inner_text()


def test_filtering_to_two_methods_keeps_their_rows_in_every_table_and_plot(page):
    section = _suite(page)
    for box in section.locator("input.method").all():
        if box.get_attribute("value") not in ("lora", "hora"):
            box.uncheck()
    for role in ("scores", "deltas", "aggregates", "hparams"):
        table = section.locator(f"table[data-role={role}]")
        assert set(_visible_methods(table)) <= {"lora", "hora"}, role
    assert sorted(_visible_methods(section.locator("table[data-role=scores]"))) == ["hora", "lora"]
    plotted = section.locator("circle.point").evaluate_all("c => c.map(p => p.dataset.method)")
    assert sorted(plotted) == ["hora", "lora"]


def test_choosing_a_task_shows_its_column_alone(page):
    section = _suite(page)
    section.locator("select.task").select_option("textures")
    heads = section.locator("table[data-role=scores] th:visible").all_inner_texts()
    assert "textures" in heads and "digits" not in heads and "mean" not in heads
    assert "trainable (% of budget)" in heads  # the resources stay


def test_switching_the_pareto_axis_plots_the_data_of_that_axis(page, board):
    scatter = next(b for b in _section(board[0]).blocks if type(b).__name__ == "Scatter")
    section = _suite(page)
    for axis in scatter.axes:
        section.locator("select.axis").select_option(axis)
        plotted = section.locator("circle.point").evaluate_all(
            "c => c.map(p => [p.dataset.method, +p.dataset.x, +p.dataset.y, +p.getAttribute('cx')])")
        expected = {p.method: (p.x[axis], p.y) for p in scatter.points}
        assert sorted(m for m, *_ in plotted) == sorted(expected)
        for method, x, y, _ in plotted:
            assert (x, y) == pytest.approx(expected[method])
        by_x = sorted(plotted, key=lambda p: p[1])
        assert [p[3] for p in by_x] == sorted(p[3] for p in plotted)  # drawn left to right in the data's order
        assert section.locator("svg.plot").get_attribute("data-axis") == axis
    assert section.locator("polyline.front").count() == 1


def test_a_rows_provenance_opens_on_demand(page):
    table = _suite(page).locator("table[data-role=scores]")
    row = table.locator("tbody tr[data-method=hora]")
    details = row.locator("xpath=following-sibling::tr[1]")
    assert details.is_hidden()
    row.locator("button.provenance").click()
    assert details.is_visible()
    text = details.inner_text()
    assert "commit" in text and "abc123def456" in text and "lr=0.001" in text and "seeds 0, 1, 2" in text
    assert row.locator("button.provenance").get_attribute("aria-expanded") == "true"


def test_record_text_is_shown_as_text_and_runs_nothing(page, board):
    assert page.locator("img[src=x]").count() == 0
    hostile = _suite(page).locator("table[data-role=scores] tbody tr").filter(
        has_text=HOSTILE).first
    assert hostile.locator("td").first.inner_text().startswith(HOSTILE)
    hostile.locator("button.provenance").click()
    assert f"{HOSTILE}=1" in hostile.locator("xpath=following-sibling::tr[1]").inner_text()
    assert HOSTILE in page.locator("th").all_inner_texts()  # the task's column
    data = json.loads(_suite(page).locator("script.scatter-data").text_content())
    assert HOSTILE in {p["method"] for p in data["points"]}
