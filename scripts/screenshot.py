"""Screenshots of a built lab book in headless Chromium (Debian's `chromium`), and a check that a page does not
scroll sideways.

The site is served from a loopback HTTP server (as GitHub Pages or `mkdocs serve` would serve it, so directory URLs
and the theme's scripts work). `check` loads the page in a same-origin frame of the given size and reads, after the
page's scripts ran: the document's scrollWidth against the window's innerWidth (no horizontal page scroll), the
elements that stick out on the right, and any event-handler attribute, javascript: URL or script that calls alert()
in the live DOM.

Usage: python scripts/screenshot.py SITE_DIR [PAGE ...] [-o OUT_DIR] [--size 1280,2000]
  SITE_DIR  a built book (mkdocs build -d SITE_DIR)
  PAGE      pages relative to SITE_DIR (default: home, the first experiment, the first paper, the reading list)

Example:
  mkdocs build -d /tmp/site && python scripts/screenshot.py /tmp/site -o /tmp/shots
"""

from __future__ import annotations

import argparse
import functools
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
SIZE = (1280, 2000)
CHECK_PAGE = "/__lab_check__.html"

_CHECK_HTML = """<!doctype html><html><head><meta charset="utf-8"></head><body style="margin:0">
<iframe id="f" src="{src}" style="width:{w}px;height:{h}px;border:0;display:block"></iframe>
<script>
const f = document.getElementById("f");
function measure() {{
  const d = f.contentDocument, w = f.contentWindow, root = d.documentElement;
  const bad = [];
  for (const el of d.querySelectorAll("*")) {{
    for (const a of el.attributes) {{
      if (/^on/i.test(a.name) || /^\\s*(javascript|vbscript|data):/i.test(a.value) && /^(href|src|action|formaction|data|xlink:href)$/i.test(a.name))
        bad.push(el.tagName.toLowerCase() + " " + a.name + "=" + a.value.slice(0, 60));
    }}
    if (el.tagName === "SCRIPT" && /alert\\(/.test(el.textContent)) bad.push("script " + el.textContent.slice(0, 60));
  }}
  const wide = [];
  for (const el of d.body.querySelectorAll("*")) {{
    const r = el.getBoundingClientRect();
    if (r.right > w.innerWidth + 1 && r.width > 0 && getComputedStyle(el).position !== "fixed") {{
      let inside = false;
      for (let p = el.parentElement; p && p !== d.body; p = p.parentElement) {{
        const s = getComputedStyle(p).overflowX;
        if (s === "auto" || s === "scroll" || s === "hidden") {{ inside = true; break; }}
      }}
      if (!inside) wide.push(el.tagName.toLowerCase() + "." + String(el.className).slice(0, 40) + " right=" + Math.round(r.right));
    }}
  }}
  const out = {{scrollWidth: root.scrollWidth, innerWidth: w.innerWidth, clientWidth: root.clientWidth,
               title: d.title, bad: bad, wide: wide.slice(0, 10)}};
  document.body.setAttribute("data-lab-check", JSON.stringify(out));
}}
f.addEventListener("load", () => {{ measure(); setTimeout(measure, 400); }});
</script></body></html>"""


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Handler(SimpleHTTPRequestHandler):
    check = b""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith(CHECK_PAGE):
            from urllib.parse import parse_qs, urlsplit

            q = parse_qs(urlsplit(self.path).query)
            body = _CHECK_HTML.format(src=html.escape(q.get("page", ["/"])[0], quote=True),
                                      w=int(q.get("w", [SIZE[0]])[0]), h=int(q.get("h", [SIZE[1]])[0])).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@contextmanager
def serve(site: Path):
    """Serve `site` on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    handler = functools.partial(_Handler, directory=str(Path(site).resolve()))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _chromium(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    browser = find_browser()
    if browser is None:
        raise RuntimeError("no chromium found; install it with: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="lab-chromium-") as profile:
        argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def screenshot(url: str, out: Path, size: tuple[int, int] = SIZE, timeout: float = 120) -> Path:
    """Open `url` in headless Chromium at `size` and write a PNG screenshot to `out`."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = _chromium([f"--screenshot={out}", f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=3000", url], timeout)
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return out


def check(base: str, page: str, size: tuple[int, int] = SIZE, timeout: float = 120) -> dict:
    """Load `page` (a path under the served site, e.g. '/experiments/exp1/report/') in a frame of `size`; return
    {scrollWidth, innerWidth, clientWidth, title, bad, wide} as the browser saw it once the page's scripts ran."""
    url = f"{base}{CHECK_PAGE}?page={quote(page)}&w={size[0]}&h={size[1]}"
    proc = _chromium([f"--window-size={size[0] + 40},{size[1] + 40}", "--virtual-time-budget=3000", "--hide-scrollbars", "--dump-dom", url], timeout)
    m = re.search(r'data-lab-check="([^"]*)"', proc.stdout)
    if not m:
        raise RuntimeError(f"chromium did not measure {page} (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(html.unescape(m.group(1)))


def default_pages(site: Path) -> dict[str, str]:
    """name -> page path for home, the first experiment, the first paper and the reading list of a built book."""
    pages = {"home": "/"}
    exps = sorted(p.parent.relative_to(site).as_posix() for p in site.glob("experiments/*/report/index.html"))
    papers = sorted(p.parent.relative_to(site).as_posix() for p in site.glob("papers/*/index.html"))
    if exps:
        pages["experiment"] = f"/{exps[0]}/"
    if papers:
        pages["paper"] = f"/{papers[0]}/"
    if (site / "reading-list" / "index.html").is_file():
        pages["reading"] = "/reading-list/"
    return pages


def shoot(site: Path, pages: dict[str, str], out_dir: Path, size: tuple[int, int] = SIZE) -> dict[str, dict]:
    """Screenshot and check each of `pages` (name -> path); return name -> check result with 'png' added."""
    results = {}
    with serve(site) as base:
        for name, page in pages.items():
            result = check(base, page, size)
            result["png"] = str(screenshot(base + page, Path(out_dir) / f"{name}.png", size))
            results[name] = result
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path)
    parser.add_argument("pages", nargs="*", help="Pages relative to SITE_DIR (default: home, an experiment, a paper, the reading list).")
    parser.add_argument("-o", "--out", type=Path, default=Path("screenshots"), help="Where the PNGs go (default: ./screenshots).")
    parser.add_argument("--size", default=f"{SIZE[0]},{SIZE[1]}", help="Window size WIDTH,HEIGHT (default: 1280,2000).")
    args = parser.parse_intermixed_args()
    size = tuple(int(v) for v in args.size.split(","))
    pages = {re.sub(r"[^A-Za-z0-9]+", "-", p).strip("-") or "home": "/" + p.lstrip("/") for p in args.pages} or default_pages(args.site)
    try:
        results = shoot(args.site, pages, args.out, size)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        sys.exit(f"screenshot: {e}")
    failed = False
    for r in results.values():
        scrolls = r["scrollWidth"] > r["innerWidth"]
        failed |= scrolls or bool(r["bad"])
        print(f"{r['png']}: scrollWidth {r['scrollWidth']} / innerWidth {r['innerWidth']}"
              + (" (scrolls sideways: " + "; ".join(r["wide"]) + ")" if scrolls else "")
              + (f"; unsafe: {r['bad']}" if r["bad"] else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
