"""The explorer in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven
by Selenium, on the page served by a running ``rnnkit explore`` and on an ``--html`` file.

It selects units and compares the colours of characters with ``trace()`` and
``analysis.colour``, hovers characters and compares the predictions, drags a selection and
compares the unit search with ``analysis.unit_search``. Without the browser the tests skip and
say why (``pytest -ra`` prints it); with RNNKIT_BROWSER_TESTS=required (CI, once it has installed
the browser) a missing browser is an error instead of a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.explore import analysis
from rnnkit.explore.bundle import MAX_CHARS, dequantize, quantize
from rnnkit.train import load_model
from rnnkit.viz.trace import trace

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[explore-test]')"
    if not any(shutil.which(b) for b in CHROMIUM) or not shutil.which("chromedriver"):
        return ("headless Chromium is not installed (Debian: apt-get install -y chromium "
                "chromium-driver)")
    return None


@pytest.fixture(scope="module")
def driver():
    reason = _missing()
    if reason:
        if os.environ.get("RNNKIT_BROWSER_TESTS") == "required":
            pytest.fail(f"RNNKIT_BROWSER_TESTS=required but {reason}")
        print(f"\nbrowser tests skipped: {reason}", file=sys.stderr)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which(next(b for b in CHROMIUM if shutil.which(b)))
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    d.set_script_timeout(60)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def text(corpus_text):
    start = corpus_text.index("\n", 9500) + 1
    return corpus_text[start:corpus_text.index("\n", start + 700) + 1]


@pytest.fixture(scope="module")
def model(tiny_run):
    return load_model(tiny_run)[:2]


def default_sigint() -> None:
    """Ctrl-C's default in the server: a suite started in the background by a shell without job
    control inherits SIGINT ignored, and so would the server, which then never stops."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def live(tiny_run, text, tmp_path_factory):
    """A running ``rnnkit explore`` (its own process), on a free port."""
    path = tmp_path_factory.mktemp("live") / "text.txt"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", "explore", tiny_run, "--text",
                             str(path), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    url, seen = None, []
    for line in proc.stdout:  # the address comes after the trace of the text
        seen.append(line)
        m = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
        if m:
            url = m.group(1)
            break
    assert url, f"no address printed: {seen} {proc.stderr.read() if proc.poll() is not None else ''}"
    yield url
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    try:  # communicate drains both pipes, so a full pipe cannot hold the server's exit
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"rnnkit explore did not stop within 60 s of Ctrl-C; stderr: {err[-2000:]}")
    assert proc.returncode == 0, err[-2000:]


@pytest.fixture(scope="module")
def static(tiny_run, text, tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    (root / "text.txt").write_text(text, encoding="utf-8")
    assert main(["explore", tiny_run, "--text", str(root / "text.txt"), "--html",
                 str(root / "page.html")]) == 0
    return (root / "page.html").as_uri()


@pytest.fixture(params=["live", "file"])
def page(request, driver):
    url = request.getfixturevalue("live" if request.param == "live" else "static")
    driver.get(url)
    wait_for(driver, "return document.body.dataset.loads == 1")
    return request.param


def wait_for(driver, script, *args, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        value = driver.execute_script(script, *args)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def choose(driver, kind, layer, unit):
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "layer")).select_by_value(str(layer))
    Select(driver.find_element("id", "kind")).select_by_value(kind)
    box = driver.find_element("id", "unit")
    box.clear()
    box.send_keys(str(unit), "\t")  # the change event fires on leaving the field
    wait_for(driver, "return document.getElementById('unit-info').textContent.indexOf(arguments[0]) >= 0",
             f"L{layer} {kind} unit {unit}")


def colours(driver, steps):
    got = driver.execute_script(
        "return arguments[0].map(i => getComputedStyle("
        "document.querySelector('#text span[data-i=\"' + i + '\"]')).backgroundColor)", steps)
    return [tuple(int(v) for v in re.findall(r"\d+", c)[:3]) for c in got]


@pytest.mark.parametrize("kind,layer,unit", [("c", 1, 3), ("f", 0, 5), ("h", 0, 11)])
def test_colours_follow_the_trace(driver, page, model, text, kind, layer, unit):
    choose(driver, kind, layer, unit)
    tr = trace(*model[:1], text, model[1])
    values = tr[kind][layer, 0].double().numpy()  # (T, H)
    style, scale = analysis.scale(kind, values)
    steps = [0, 1, 7, 30, 123, 350, len(text) - 1]
    want = [analysis.colour(values[t, unit], style, scale[unit]) for t in steps]
    got = colours(driver, steps)
    assert len({w for w in want}) > 2, "the chosen unit should vary over these characters"
    for t, w, g in zip(steps, want, got):
        assert max(abs(a - b) for a, b in zip(w, g)) <= 2, f"character {t}: {g} != {w}"


def test_hover_shows_the_predictions(driver, page, model, text):
    from selenium.webdriver.common.action_chains import ActionChains

    tr = trace(model[0], text, model[1])
    for t in (5, 222, len(text) - 2):
        span = driver.find_element("css selector", f'#text span[data-i="{t}"]')
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", span)
        ActionChains(driver).move_to_element(span).perform()
        wait_for(driver, "const t = document.getElementById('tooltip');"
                         "return !t.hidden && t.dataset.i == arguments[0]", str(t))
        rows = driver.execute_script(
            "return [...document.querySelectorAll('#tooltip tr.pred')]"
            ".map(r => [r.dataset.char, +r.dataset.p, r.classList.contains('actual')])")
        want = tr.top_predictions(t, 5)
        assert [r[0] for r in rows] == [c for c, _ in want]
        np.testing.assert_allclose([r[1] for r in rows], [p for _, p in want], atol=1.5e-4)
        assert [r[2] for r in rows] == [c == text[t + 1] for c, _ in want]


def drag_select(driver, a, b):
    """Select characters a..b-1 with the mouse: press on a's left half, release on b-1's right."""
    from selenium.webdriver.common.action_chains import ActionChains

    first = driver.find_element("css selector", f'#text span[data-i="{a}"]')
    last = driver.find_element("css selector", f'#text span[data-i="{b - 1}"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", first)
    w0, w1 = first.size["width"], last.size["width"]
    (ActionChains(driver).move_to_element_with_offset(first, -int(w0 / 2) + 1, 0).click_and_hold()
     .move_to_element_with_offset(last, int(w1 / 2) - 1, 0).release().perform())
    return wait_for(driver, "const s = document.getElementById('selection');"
                            "return s.dataset.start !== undefined && "
                            "document.querySelectorAll('#search-results li').length > 0 && "
                            "[+s.dataset.start, +s.dataset.end]")


def test_unit_search_matches_python(driver, page, model, text):
    tr = trace(model[0], text, model[1])
    line = text.index("\n", 200) + 1  # a whole line, from its first to its last character
    a, b = line, text.index("\n", line)
    assert drag_select(driver, a, b) == [a, b]
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#search-results li')].map(li => "
        "[li.dataset.kind, +li.dataset.layer, +li.dataset.direction, +li.dataset.unit, +li.dataset.score])")
    best = analysis.unit_search(tr, (a, b), top=10)
    assert tuple(rows[0][:4]) == (best[0].kind, best[0].layer, best[0].direction, best[0].unit)
    assert rows[0][4] == pytest.approx(best[0].score, rel=0.05)
    # the page's d is analysis.separation on the bytes it was sent, to rounding
    mask = np.zeros(len(text), bool)
    mask[a:b] = True
    for kind, layer, direction, unit, score in rows:
        v = tr[kind][layer, direction].numpy()  # float32, quantized as the bundle does
        seen = dequantize(*quantize(v))
        assert score == pytest.approx(analysis.separation(seen, mask)[unit], rel=1e-9, abs=1e-9)
    driver.find_element("css selector", "#search-results li").click()
    assert driver.find_element("id", "unit").get_attribute("value") == str(best[0].unit)


def test_feature_scan_and_saturation_shown(driver, page, model, text):
    tr = trace(model[0], text, model[1])
    scan = analysis.feature_scan(tr)
    for name in ("in quotes", "position in line"):
        li = driver.find_element("css selector", f'.feature[data-feature="{name}"] li')
        top = scan[name][0]
        assert (li.get_attribute("data-kind"), int(li.get_attribute("data-unit"))) == (top.kind, top.unit)
        assert float(li.get_attribute("data-score")) == pytest.approx(top.score, abs=1e-4)
    dots = driver.execute_script("return document.querySelectorAll('#saturation circle').length")
    assert dots == 3 * 2 * tr["i"].shape[-1]  # i, f, o; two layers; every unit


def test_new_text_is_traced(driver, live, model, tmp_path):
    driver.get(live)
    wait_for(driver, "return document.body.dataset.loads == 1")
    new = 'print("hello (world)")\nx = [1, 2]\n'
    box = driver.find_element("id", "input")
    box.clear()
    box.send_keys(new)
    driver.find_element("id", "run").click()
    wait_for(driver, "return document.body.dataset.loads == 2")
    assert driver.execute_script("return document.getElementById('text').textContent") == new.replace("\n", "↵\n")
    choose(driver, "c", 0, 2)
    tr = trace(model[0], new, model[1])
    values = tr["c"][0, 0].double().numpy()
    style, scale = analysis.scale("c", values)
    steps = [0, 6, 13, len(new) - 1]
    for t, g in zip(steps, colours(driver, steps)):
        w = analysis.colour(values[t, 2], style, scale[2])
        assert max(abs(x - y) for x, y in zip(w, g)) <= 2
    # a file loaded in the page is traced too
    path = tmp_path / "loaded.txt"
    path.write_text("for x in y:\n    pass\n", encoding="utf-8")
    driver.find_element("id", "file").send_keys(str(path))
    wait_for(driver, "return document.body.dataset.loads == 3")
    assert driver.execute_script("return document.getElementById('input').value") == path.read_text()


def test_bad_text_gets_a_message_in_the_page(driver, live):
    driver.get(live)
    wait_for(driver, "return document.body.dataset.loads == 1")
    box = driver.find_element("id", "input")
    box.clear()
    box.send_keys("caf\u00e9 \u20ac")
    driver.find_element("id", "run").click()
    msg = wait_for(driver, "const m = document.getElementById('message');"
                           "return !m.hidden && !/Tracing/.test(m.textContent) && m.textContent")
    assert "outside the model's vocabulary" in msg and "'€'" in msg
    driver.execute_script("document.getElementById('input').value = 'a'.repeat(10 * 1024 * 1024)")
    driver.find_element("id", "run").click()
    msg = wait_for(driver, "const m = document.getElementById('message');"
                           "return /10,485,760/.test(m.textContent) && m.textContent")
    assert f"at most {MAX_CHARS:,}" in msg
    choose(driver, "h", 0, 4)  # the page still works, on its old text
    assert driver.execute_script("return document.body.dataset.loads") == "1"


def test_saved_file_says_retracing_needs_the_server(driver, static):
    driver.get(static)
    wait_for(driver, "return document.body.dataset.loads == 1")
    assert not driver.find_element("id", "run").is_enabled()
    assert "rnnkit explore" in driver.find_element("id", "input-note").text
    assert driver.execute_script(
        "return performance.getEntriesByType('resource').length") == 0  # nothing fetched
