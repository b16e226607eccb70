"""A page opened in the real headless Chromium (the Debian package ``chromium``).

Used by tests/test_report_html.py and scripts/report_example.py. ``open_page`` runs one
Chromium process on a local file with ``--dump-dom`` (the DOM after the page's scripts
ran), ``--screenshot`` and ``--log-net-log`` (every network request the browser made), and
returns the three. Host names resolve nowhere (``--host-resolver-rules``), so even
Chromium's own background requests (component updates, account checks) never leave the
machine; ``Opened.page_requests`` tells the page's requests from those.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Where the Debian package installs it; ``EARSHOT_CHROMIUM`` points elsewhere.
CHROMIUM = "/usr/bin/chromium"

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-pings",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--net-log-capture-mode=Default",
)


def chromium() -> str | None:
    """The Chromium executable, or ``None`` when it is not installed."""
    wanted = os.environ.get("EARSHOT_CHROMIUM") or CHROMIUM
    if Path(wanted).is_file() and os.access(wanted, os.X_OK):
        return wanted
    return shutil.which("chromium")


@dataclass(frozen=True)
class Opened:
    """What Chromium made of a page: its DOM, a screenshot and its network log."""

    dom: str
    png: Path
    netlog: Path
    stderr: str

    def requests(self) -> list[dict[str, str]]:
        """Every URL request the browser started (``url``, ``initiator``, ``isolation``)."""
        data = json.loads(self.netlog.read_text("utf-8"))
        start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        return [
            {
                "url": str(event["params"].get("url", "")),
                "initiator": str(event["params"].get("initiator", "")),
                "isolation": str(event["params"].get("network_isolation_key", "")),
            }
            for event in data["events"]
            if event.get("type") == start and "params" in event
        ]

    def page_requests(self) -> list[str]:
        """The URLs the page itself asked for (beyond its own file).

        A request made for a page carries the page's site in its network isolation key
        (``file://`` here); Chromium's own background requests carry none or Google's.
        """
        return [
            r["url"]
            for r in self.requests()
            if "file://" in r["isolation"] and not r["url"].startswith("file:")
        ]


def open_page(
    page: Path, workdir: Path, *, width: int = 1200, height: int = 2400, timeout: float = 180
) -> Opened:
    """Open ``page`` (a local file) in headless Chromium; raise if it fails or hangs.

    ``timeout`` only guards against a hung browser (generous: a busy machine is slow).
    """
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    workdir.mkdir(parents=True, exist_ok=True)
    png = workdir / f"{page.stem}.png"
    netlog = workdir / f"{page.stem}.netlog.json"
    profile = workdir / "profile"
    command = [
        exe,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--log-net-log={netlog}",
        f"--window-size={width},{height}",
        f"--screenshot={png}",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return Opened(done.stdout, png, netlog, done.stderr)
