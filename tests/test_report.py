"""runs/demo/report.html, opened in real headless Chromium over the DevTools protocol.

The run folder is made by real small steps: a tiny checkpoint exported by qt-export (FP32, and INT8
with PTQ and QAT candidates), evaluated by qt-eval, a clip restored by qt-run with --summary, a
photo restored by the INT8 artifact, and a claim.json in bench/claim.py's shape from that
evaluation. The test checks the page in the browser: a screenshot, every image and video loaded,
no console errors, no request leaving the page; and that numbers on the page are the files' numbers.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.test_export import _save_tiny

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.slow


def _clip(path: Path, n: int = 16, size=(96, 128)) -> Path:
    from qt_export.export import synthetic_frames

    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8.0, (w, h))
    base = synthetic_frames(1, (h, w + n * 4), seed=2)[0]
    for i in range(n):  # a pan across one synthetic scene
        writer.write(np.ascontiguousarray(base[:, 4 * i: 4 * i + w]))
    writer.release()
    return path


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    from qt_export.cli import main as qt_export
    from qt_export.export import synthetic_frames
    from qt_export.gate import run_backend
    from qt_runtime.cli import main as qt_run
    from qt_train.eval_cli import evaluate_checkpoint

    d = tmp_path_factory.mktemp("report")
    run = d / "demo"
    ckpt = _save_tiny(d / "tiny.ckpt")
    calib = d / "calib"
    calib.mkdir()
    for i, f in enumerate(synthetic_frames(16, (96, 128), seed=5)):
        cv2.imwrite(str(calib / f"{i:02d}.png"), f)
    common = ["--target", "cpu", "--size", "128x96", "--gate-frames", "3", "--no-progress"]
    assert qt_export([str(ckpt), *common, "--out", str(run / "artifact" / "dehaze-fp32")]) == 0
    assert qt_export([str(ckpt), *common, "--int8", "--qat", "--qat-steps", "2", "--calib", str(calib),
                      "--calib-frames", "12", "--no-calib-iqa", "--min-psnr", "20", "--min-frame-psnr", "15",
                      "--max-score-drop", "0.5", "--out", str(run / "artifact" / "dehaze-int8")]) == 0
    results = evaluate_checkpoint(ckpt, run / "eval" / "dehaze", None, [], None, 96, 2, force=True)
    restore = run / "restore" / "dehaze"
    restore.mkdir(parents=True)
    (run / "clip").mkdir()
    clip = _clip(run / "clip" / "hazy.mp4")
    assert qt_run([str(run / "artifact" / "dehaze-int8"), "--source", str(clip), "--sink", str(restore / "restored.mp4"),
                   "--no-progress", "--summary", str(restore / "summary.json")]) == 0
    photo = synthetic_frames(1, (96, 128), seed=9)[0]  # RGB
    real = run / "real" / "dehaze"
    (real / "input").mkdir(parents=True)
    (real / "restored").mkdir()
    cv2.imwrite(str(real / "input" / "street.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    out = run_backend(run / "artifact" / "dehaze-int8", photo.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
    restored = (out[0].transpose(1, 2, 0) * 255.0).round().clip(0, 255).astype(np.uint8)
    cv2.imwrite(str(real / "restored" / "street.png"), cv2.cvtColor(restored, cv2.COLOR_RGB2BGR))
    claim = d / "claim"
    claim.mkdir()
    (claim / "claim.json").write_text(json.dumps({"dehaze": {"tiny": results}}))
    return run


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if e.get("method") == method:
                    return e
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: `make sysdeps` installs it (apt-get install -y chromium)")
    profile = tmp_path / "profile"
    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync", "--no-first-run",
                             "--disable-default-apps", "--mute-audio", f"--user-data-dir={profile}",
                             "--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        yield tools
        tools.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


LOAD_STATES = """(async () => {
  const media = [...document.images, ...document.querySelectorAll('video')];
  const ready = m => m.tagName === 'IMG' ? m.complete : (m.readyState >= 2 || m.error);
  for (let i = 0; i < 300 && !media.every(ready); i++) await new Promise(r => setTimeout(r, 100));
  return media.map(m => m.tagName === 'IMG'
    ? {tag: 'img', ok: m.complete && m.naturalWidth > 0, w: m.naturalWidth}
    : {tag: 'video', ok: !m.error && m.readyState >= 2 && m.videoWidth > 0, w: m.videoWidth,
       state: m.readyState, error: m.error && m.error.message, duration: m.duration});
})()"""


def test_report_opens_in_headless_chromium(demo_run, browser, tmp_path):
    from qt_apps.report import main as report_main

    out = demo_run / "report.html"
    assert report_main([str(demo_run), "--claim", str(demo_run.parent / "claim" / "claim.json")]) == 0
    page = out.read_text()
    assert "http://" not in page and "https://" not in page  # nothing to fetch: opens offline

    browser.call("Page.enable")
    browser.call("Runtime.enable")
    browser.call("Log.enable")
    browser.call("Network.enable")
    browser.call("Page.navigate", url=out.resolve().as_uri())
    browser.wait_event("Page.loadEventFired")
    media = browser.evaluate(LOAD_STATES)
    assert [m["tag"] for m in media].count("video") == 1 and [m["tag"] for m in media].count("img") == 4, media
    assert all(m["ok"] for m in media), media
    # the video really plays (H.264 decoded by this browser)
    assert browser.evaluate("(async () => { const v = document.querySelector('video'); await v.play(); "
                            "await new Promise(r => setTimeout(r, 700)); return v.currentTime; })()") > 0
    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])
    (tmp_path / "report.png").write_bytes(shot)
    img = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[0] > 1000 and img.std() > 5  # a whole page, not a blank one

    errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert not errors, errors
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert all(u.startswith(("file:", "data:")) for u in requests), requests

    # every number comes from the run's files
    text = browser.evaluate("document.body.innerText")
    summary = json.loads((demo_run / "restore" / "dehaze" / "summary.json").read_text())
    assert f"{summary['fps_mean']:.1f}" in text and f"{summary['latency']['infer']['p99_ms']:.1f}" in text
    report = json.loads((demo_run / "artifact" / "dehaze-int8" / "report.json").read_text())
    assert set(report["candidates"]) == {"ptq", "qat"}
    for c in report["candidates"].values():
        assert f"{c['psnr_vs_fp32']:.2f}" in text and f"{c['psnr_min']:.2f}" in text
    assert "INT8 PTQ" in text and "INT8 QAT" in text and "FP32" in text
    results = json.loads((demo_run / "eval" / "dehaze" / "results.json").read_text())
    assert f"{results['paired']['realistic']['psnr']:.2f}" in text
    assert f"{results['level_curve']['judge']['spearman']:+.2f}" in text
    for spec in (results["reward_ensemble"], results["judge"]):
        assert all(m["name"] in text for m in spec["members"])
    assert "tiny" in text  # the claim table's row


def test_report_refuses_a_missing_folder(tmp_path, capsys):
    from qt_apps.report import main as report_main

    assert report_main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a folder" in err[0]


def test_headings_name_the_model_zoo_or_this_run(tmp_path):
    """A page that shows the zoo's models and the run's own export side by side must not mix them up."""
    from qt_apps.report import model_label
    from qt_core import zoo

    root = zoo.default_root()
    assert model_label(root / "dehaze" / "openvino-int8", tmp_path) == "zoo:dehaze"
    assert model_label("lowlight/model.ckpt", tmp_path) == "zoo:lowlight"  # the zoo's eval.json names it relatively
    run = tmp_path / "demo"
    assert model_label(run / "train" / "export" / "dehaze-int8", run) == "this run: train/export/dehaze-int8"
    assert model_label(run / "train" / "finetune" / "run" / "last.ckpt", run) == "this run: train/finetune"
    assert model_label(None, run) == "unknown model"
