"""The rendered reports in a real browser: every page of ``reports/`` opens in headless
Chromium with every image loaded, no console error, and no NaN cell in a table.

``reports/`` is served over ``http.server`` on 127.0.0.1 (an ephemeral port) from a
thread; Debian's ``chromium`` loads each page with ``--dump-dom``. The server adds one
small script at the top of each page's ``<head>`` that records errors (script errors,
failed resource loads, ``console.error``, unhandled rejections) from the start, and
after the load event writes what it found (images, errors, NaN cells) into the DOM
that Chromium dumps. Console messages Chromium logs on stderr are read as well.

Runs against whatever reports exist (``make reports`` writes them). Skips only when
Chromium is not installed and ``CI`` is unset; under ``CI`` a missing Chromium fails
(``.ci/run`` installs it).
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from hybridsched.paths import reports_dir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPORTS = reports_dir()
PAGES = sorted(p.name for p in REPORTS.glob("*.html")) if REPORTS.is_dir() else []

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip(
        "chromium is not installed (apt-get install chromium) and CI is unset",
        allow_module_level=True,
    )

PROBE = """<script>
(function () {
  var errors = [];
  window.__hsErrors = errors;
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) {
      errors.push("failed to load " + (t.src || t.href).slice(0, 120));
    } else {
      errors.push("script error: " + e.message);
    }
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    errors.push("unhandled rejection: " + e.reason);
  });
  var origError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return origError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var imgs = Array.prototype.map.call(document.images, function (img) {
      return {src: img.src.slice(0, 60), ok: img.complete && img.naturalWidth > 0};
    });
    var nan = [];
    Array.prototype.forEach.call(document.querySelectorAll("table"), function (tbl, k) {
      Array.prototype.forEach.call(tbl.querySelectorAll("td, th"), function (cell) {
        var text = cell.textContent.trim();
        if (/^(nan|NaN|<NA>|NaT|inf|-inf)$/.test(text)) {
          var row = cell.parentElement.querySelector("th, td");
          nan.push("table " + k + ", row " + (row ? row.textContent.trim() : "?") + ": " + text);
        }
      });
    });
    var out = document.createElement("pre");
    out.id = "hs-browser-check";
    out.textContent = JSON.stringify({images: imgs, errors: errors, nan: nan});
    document.body.appendChild(out);
  });
})();
</script>"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``reports/``; HTML pages get the probe script first thing in their head."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = Path(self.translate_path(self.path.split("?")[0]))
        if path.suffix != ".html" or not path.is_file():
            return super().do_GET()
        page = path.read_text(encoding="utf-8")
        m = re.search(r"<head[^>]*>", page, flags=re.I)
        at = m.end() if m else 0
        body = (page[:at] + PROBE + page[at:]).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture(scope="module")
def server():
    """``reports/`` on http://127.0.0.1:<ephemeral port>/ for the module's tests."""
    handler = functools.partial(_Handler, directory=str(REPORTS))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def _open(url: str) -> tuple[dict | None, str]:
    """Load ``url`` in headless Chromium: the probe's findings (None if it never ran) and stderr."""
    assert CHROMIUM is not None, "CI is set but chromium is not installed (.ci/run installs it)"
    with tempfile.TemporaryDirectory(prefix="hs-chromium-") as profile:
        proc = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=10000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    m = re.search(r'<pre id="hs-browser-check">(.*?)</pre>', proc.stdout, flags=re.S)
    return (json.loads(html.unescape(m.group(1))) if m else None), proc.stderr


def _console_errors(stderr: str) -> list[str]:
    """Console messages Chromium logged on stderr that are errors (uncaught, failed loads)."""
    lines = [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]
    return [ln for ln in lines if re.search(r"Uncaught|Failed to load|ERROR", ln)]


@pytest.mark.slow
@pytest.mark.skipif(not PAGES, reason="no rendered reports in reports/ (run `make reports`)")
@pytest.mark.parametrize("page", PAGES)
def test_report_opens_with_images_and_without_errors(server, page):
    """Tests that a report page loads in Chromium with every image decoded, no script or
    resource error, no console error, and no NaN/inf cell in any table."""
    if page != "index.html":
        assert 'id="hs-toggle-code"' in (REPORTS / page).read_text(encoding="utf-8"), (
            f"reports/{page} was rendered before the current report template (no navigation "
            "bar; it loads scripts from a CDN): re-render with `make reports`"
        )
    found, stderr = _open(f"{server}/{page}")
    assert found is not None, f"{page}: the page did not finish loading\n{stderr[-2000:]}"
    broken = [i["src"] for i in found["images"] if not i["ok"]]
    assert broken == [], f"{page}: broken image(s) {broken}"
    assert found["errors"] == [], f"{page}: {found['errors']}"
    assert _console_errors(stderr) == [], f"{page}: console errors"
    assert found["nan"] == [], f"{page}: NaN cells (re-render with `make reports`?) {found['nan']}"


def test_probe_catches_a_broken_image_and_a_nan(server):
    """Tests the checker itself on a page with a broken image, a script error and a NaN cell,
    so a passing report test means the checks ran."""
    bad = REPORTS / ".browser-probe-test.html"
    REPORTS.mkdir(exist_ok=True)
    bad.write_text(
        "<!doctype html><html><head><title>t</title></head><body>"
        "<img src='missing.png'><img src='data:image/png;base64,iVBORw0KGgo='>"
        "<table><tr><th>U gain</th><td>NaN</td></tr></table>"
        "<script>undefinedFunction();</script></body></html>",
        encoding="utf-8",
    )
    try:
        found, stderr = _open(f"{server}/{bad.name}")
    finally:
        bad.unlink()
    assert found is not None
    assert [i["ok"] for i in found["images"]] == [False, False]
    assert any("failed to load" in e and "missing.png" in e for e in found["errors"])
    assert any("undefinedFunction" in e for e in found["errors"])
    assert found["nan"] == ["table 0, row U gain: NaN"]
    assert any("undefinedFunction" in line for line in _console_errors(stderr))
