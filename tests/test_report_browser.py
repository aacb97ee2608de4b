"""The HTML report in headless Chromium (alphagraph.reporting.browser_check); skipped without Chromium or playwright."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest

from alphagraph.reporting.browser_check import ENV_CHROMIUM, check_page, find_chromium, main
from alphagraph.reporting.page import render_report
from tests.test_report_page import HORIZONS, RUN, make_workspace

SHOT_WIDTH = 1280


def _browser_or_skip() -> None:
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install playwright)")
    if find_chromium() is None:
        pytest.skip(f"no Chromium: set {ENV_CHROMIUM} or put chromium / chromium-browser / google-chrome on PATH")


def test_page_renders_in_chromium(tmp_path: Path) -> None:
    _browser_or_skip()
    root = tmp_path / "run"
    board = make_workspace(root)
    page = root / "reports" / "index.html"
    page.write_text(render_report(root, board, HORIZONS, RUN))
    shot = tmp_path / "docs" / "report.png"

    result = check_page(page, shot)

    assert result.errors == []
    assert result.figures == page.read_text().count("<figure") > 10
    assert result.rendered == result.figures and result.ok
    assert result.height > 2000  # a long page, not an empty or collapsed one
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == SHOT_WIDTH and 1000 <= height <= 1400
    assert len(data) > 20_000  # drawn content; a blank 1280x1400 PNG is a few kB


def test_broken_figure_and_external_request_are_reported(tmp_path: Path) -> None:
    _browser_or_skip()
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head><body>'
        '<figure id="fig-ok"><svg viewBox="0 0 10 10" style="width:200px"><rect width="10" height="10"/></svg>'
        "<figcaption>fine</figcaption></figure>"
        '<figure id="fig-empty"><svg viewBox="0 0 10 10" style="width:0;height:0"></svg>'
        "<figcaption>empty</figcaption></figure>"
        '<figure id="fig-none"><figcaption>no svg</figcaption></figure>'
        '<img src="http://127.0.0.1:9/x.png" alt="">'
        "</body></html>"
    )
    result = check_page(page)
    assert (result.figures, result.rendered) == (3, 1) and not result.ok
    text = "\n".join(result.errors)
    assert "fig-empty" in text and "fig-none: no svg" in text and "external request: http://127.0.0.1:9/x.png" in text


def test_main_without_chromium_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "index.html"
    page.write_text("<!DOCTYPE html><html><body></body></html>")
    monkeypatch.setenv(ENV_CHROMIUM, str(tmp_path / "no-such-chromium"))
    assert main([str(page)]) == 2
    assert "cannot check" in capsys.readouterr().err
