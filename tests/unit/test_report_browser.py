"""The report in a real headless Chromium: it renders (non-blank, the grid there), makes no
network request of its own, logs no console error, and hostile text does not run."""

import os
import re
import shutil
import subprocess

import pytest

from mbtest.report.render import render
from tests.unit.test_report import probe_file, results_dir

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
# Chromium's own service traffic (not the page's) still shows in its network log.
BROWSER_SERVICES = re.compile(
    r"^https?://([a-z0-9-]+\.)*(google\.com|googleapis\.com|gvt1\.com|gstatic\.com)/"
)


def chromium():
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make setup` installs it")
        pytest.skip("chromium is not installed (make setup installs it)")
    return path


def test_report_renders_in_chromium_with_no_network_and_no_script(tmp_path):
    browser = chromium()
    sources = [str(results_dir(tmp_path / "r", evil=True)), str(probe_file(tmp_path, evil=True))]
    report = render(sources, str(tmp_path / "report.html"))
    url = f"file://{report}"
    common = [browser, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    netlog = tmp_path / "netlog.json"
    dom = subprocess.run(
        [*common, f"--log-net-log={netlog}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-500:]
    assert (
        'id="grid"' in dom.stdout
        and 'id="probes"' in dom.stdout
        and "<title>mbtest: MPTCP interference report</title>" in dom.stdout
    )
    assert "pwned" not in dom.stdout.split("<body>")[0]  # the title was not rewritten by a script
    assert "CONSOLE" not in dom.stderr  # no console message, let alone an error
    urls = set(re.findall(r'"url":"([^"]+)"', netlog.read_text()))
    page_requests = [
        u for u in urls if not u.startswith("file://") and not BROWSER_SERVICES.match(u)
    ]
    assert page_requests == []
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*common, "--window-size=1400,1000", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000  # a blank page compresses to a few KB
