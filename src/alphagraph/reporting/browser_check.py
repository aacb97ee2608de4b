"""Open the HTML report in headless Chromium and check that it renders.

:func:`check_page` loads the page through playwright with a local Chromium
(``ALPHAGRAPH_CHROMIUM``, else the first of chromium / chromium-browser /
google-chrome on ``PATH``), collects console errors and warnings, page errors
and any request that leaves the file (the page must be self-contained),
checks that every ``<figure>`` holds an ``svg`` with a non-empty box, and can
save a PNG of the top of the page (for the README)::

    python -m alphagraph.reporting.browser_check reports/index.html --screenshot docs/report.png

Exit status: 0 when the page is clean, 1 on errors or figures that did not
render, 2 when no Chromium or no playwright is available.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from alphagraph.runtime.io import atomic_path

ENV_CHROMIUM = "ALPHAGRAPH_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# A root user on an offline machine: no sandbox, nothing that phones home or waits for the network.
LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
WIDTH = 1280
SHOT_HEIGHT = 1400

# Each figure's svg box, read in the page (no script of the page's own: it has none).
_FIGURES_JS = """() => Array.from(document.querySelectorAll('figure')).map((f, i) => {
  const s = f.querySelector('svg');
  const r = s ? s.getBoundingClientRect() : {width: 0, height: 0};
  return {id: f.id || ('#' + i), svg: !!s, width: r.width, height: r.height, caption: !!f.querySelector('figcaption')};
})"""


class BrowserUnavailable(RuntimeError):
    """No Chromium executable or no playwright package: the check cannot run here."""


@dataclass
class PageCheck:
    """What the browser saw: figures found and rendered, errors, the page's height in CSS pixels."""

    figures: int
    rendered: int
    height: int
    errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and self.rendered == self.figures

    def line(self) -> str:
        status = "ok" if self.ok else "FAILED"
        text = (f"{status}: {self.rendered}/{self.figures} figures rendered, {len(self.errors)} errors, "
                f"height {self.height}px")
        if self.screenshot is not None:
            text += f", screenshot {self.screenshot}"
        return text


def find_chromium() -> str | None:
    """The Chromium to use: ``$ALPHAGRAPH_CHROMIUM`` if set (and present), else the first candidate on PATH."""
    env = os.environ.get(ENV_CHROMIUM)
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    return next((p for name in CANDIDATES if (p := shutil.which(name))), None)


def check_page(
    html_path: str | Path,
    screenshot: str | Path | None = None,
    *,
    executable: str | None = None,
    width: int = WIDTH,
    shot_height: int = SHOT_HEIGHT,
    timeout_ms: int = 30_000,
) -> PageCheck:
    """Load ``html_path`` in headless Chromium and report what rendered (see :class:`PageCheck`).

    Errors: console messages of type error or warning, uncaught page errors,
    failed requests, requests for anything but the file itself or ``data:``,
    figures without an ``svg`` or a caption, and svgs with an empty box. With
    ``screenshot``, a PNG of the top ``width`` x ``shot_height`` pixels is saved.
    Raises :class:`BrowserUnavailable` without playwright or a Chromium.
    """
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise BrowserUnavailable(f"playwright is not installed ({exc}); pip install playwright") from None
    exe = executable or find_chromium()
    if not exe:
        raise BrowserUnavailable(
            f"no Chromium found: set {ENV_CHROMIUM} or install one of {', '.join(CANDIDATES)} on PATH")
    path = Path(html_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{html_path}: no such page")
    url = path.as_uri()
    errors: list[str] = []

    def on_request(request) -> None:  # noqa: ANN001
        if request.url != url and not request.url.startswith(("data:", "about:")):
            errors.append(f"external request: {request.url}")

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, headless=True, args=list(LAUNCH_ARGS))
            try:
                page = browser.new_page(viewport={"width": width, "height": shot_height}, device_scale_factor=1)
                page.on("console", lambda m: m.type in ("error", "warning")
                        and errors.append(f"console {m.type}: {m.text}"))
                page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
                page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} ({r.failure})"))
                page.on("request", on_request)
                page.goto(url, wait_until="load", timeout=timeout_ms)
                boxes = page.evaluate(_FIGURES_JS)
                height = int(page.evaluate("() => document.documentElement.scrollHeight"))
                shot = None
                if screenshot is not None:
                    shot = Path(screenshot)
                    clip = {"x": 0, "y": 0, "width": width, "height": min(shot_height, height)}
                    with atomic_path(shot) as tmp:  # a killed check leaves no half-written PNG
                        page.screenshot(path=str(tmp), type="png", clip=clip, full_page=True)
            finally:
                browser.close()
    except PlaywrightError as exc:
        # A browser that will not start is an environment problem, not a broken page.
        if "launch" in str(exc).lower() or "executable" in str(exc).lower():
            raise BrowserUnavailable(f"{exe}: Chromium did not start ({str(exc).splitlines()[0]})") from None
        raise

    rendered = 0
    for box in boxes:
        if not box["svg"]:
            errors.append(f"figure {box['id']}: no svg")
        elif box["width"] <= 0 or box["height"] <= 0:
            errors.append(f"figure {box['id']}: svg has an empty box ({box['width']}x{box['height']})")
        else:
            rendered += 1
        if not box["caption"]:
            errors.append(f"figure {box['id']}: no figcaption")
    return PageCheck(figures=len(boxes), rendered=rendered, height=height, errors=errors, screenshot=shot)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the HTML report in headless Chromium.")
    parser.add_argument("page", help="the HTML page, e.g. reports/index.html")
    parser.add_argument("--screenshot", help="save a PNG of the top of the page here")
    parser.add_argument("--chromium", help=f"Chromium executable (default: ${ENV_CHROMIUM} or PATH)")
    args = parser.parse_args(argv)
    try:
        result = check_page(args.page, args.screenshot, executable=args.chromium)
    except BrowserUnavailable as exc:
        print(f"browser_check: cannot check {args.page}: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"browser_check: {exc}", file=sys.stderr)
        return 1
    print(f"{args.page}: {result.line()}")
    for err in result.errors:
        print(f"  {err}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
