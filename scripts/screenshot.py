"""Take a screenshot of one page of a built lab book in headless Chromium (Debian's `chromium`).

Usage: python scripts/screenshot.py SITE_DIR [PAGE] [-o OUT.png]
  SITE_DIR  a built book (mkdocs build -d SITE_DIR)
  PAGE      the page, relative to SITE_DIR (default: the first experiment's page)

Example:
  mkdocs build -d /tmp/site && python scripts/screenshot.py /tmp/site experiments/exp1/report/index.html -o exp1.png
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(page: Path, out: Path, size: str = "1280,1600", timeout: float = 120) -> Path:
    """Open `page` (a local HTML file) in headless Chromium and write a PNG screenshot to `out`."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError("no chromium found; install it with: apt-get install -y chromium")
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory(prefix="lab-chromium-") as profile:
        argv = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={size}", "--hide-scrollbars",
            Path(page).resolve().as_uri(),
        ]
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path)
    parser.add_argument("page", nargs="?")
    parser.add_argument("-o", "--out", type=Path, default=Path("screenshot.png"))
    args = parser.parse_args()
    if args.page:
        page = args.site / args.page
    else:
        pages = sorted(args.site.glob("experiments/*/report/index.html"))
        if not pages:
            sys.exit(f"no experiment page in {args.site}")
        page = pages[0]
    try:
        print(screenshot(page, args.out))
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        sys.exit(f"screenshot: {e}")


if __name__ == "__main__":
    main()
