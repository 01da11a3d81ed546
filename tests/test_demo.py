"""ganforge demo: its HTTP endpoints on tiny runs of each kind (samples by seed, truncation and mixing, labels,
translation both ways, classification), its command line (bad run directories, a port in use, Ctrl-C), and the
page itself in headless Chromium (driven by Playwright where installed): no request leaves the machine."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from ganforge.apps.demo import attach, load_demo, make_server, png_grid, url_of, warm_up
from ganforge.apps.sampling import load_generator
from ganforge.apps.training import train
from ganforge.config import load_config
from conftest import sigint_default

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
quiet = dict(progress=False, log=lambda s: None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny run per kind the page knows, trained on first use."""
    from conftest import tiny_config

    root, done = tmp_path_factory.mktemp("demo-runs"), {}

    def get(family: str) -> Path:
        if family not in done:
            cfg = load_config("ring8-mlp", ["eval.final=false", "train.device=cpu", "train.threads=1"],
                              {"train.steps": 4, "train.epochs": None}) if family == "points" else \
                tiny_config(family, steps=4)
            train(cfg, root / family, **quiet)
            done[family] = root / family
        return done[family]

    return get


@contextmanager
def serving(run: Path):
    """The demo of ``run`` on a free loopback port, in this process: yields its base URL."""
    server = make_server("127.0.0.1", 0)
    demo = load_demo(run, "cpu")
    warm_up(demo)  # as 'ganforge demo' does: every model once
    attach(server, demo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url_of(server).rstrip("/")
    finally:
        server.shutdown()
        server.server_close()


def get(url: str, data: bytes | None = None) -> tuple[int, bytes, str]:
    """(status, body, content type) of a GET, or of a POST when ``data`` is given."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=120) as res:
            return res.status, res.read(), res.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


def png(body: bytes) -> np.ndarray:
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(body)))


def upload_png(h: int = 28, w: int = 28, seed: int = 0) -> bytes:
    """A digit-sized grey image (a white bar on black), as the page would upload it."""
    arr = np.zeros((h, w), np.uint8)
    arr[h // 4: 3 * h // 4, w // 2 - 2: w // 2 + 2] = 255
    arr[np.random.default_rng(seed).random((h, w)) < 0.05] = 128
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_samples_by_seed_are_pngs_the_same_seed_the_same_pixels(runs):
    with serving(runs("dcgan")) as url:
        status, body, kind = get(f"{url}/api/sample?seed=1&n=16")
        assert status == 200 and kind == "image/png"
        a = png(body)
        assert a.shape == (4 * 18 + 2, 4 * 18 + 2)  # a 4x4 grid of 16 px images, 2 px apart
        assert np.array_equal(a, png(get(f"{url}/api/sample?seed=1&n=16")[1]))
        assert not np.array_equal(a, png(get(f"{url}/api/sample?seed=2&n=16")[1]))
        assert np.array_equal(a, png(png_grid(load_generator(runs("dcgan"), "cpu").sample(16, seed=1))))
        walk = png(get(f"{url}/api/walk?a=1&b=2&frames=5")[1])
        assert walk.shape == (18 + 2, 5 * 18 + 2)
        info = json.loads(get(f"{url}/api/info")[1])
        assert info["sample"] and not info["style_based"] and not info["conditional"] and info["directions"] == []
        page = get(url + "/")[1].decode()
        assert "http://" not in page and "https://" not in page and "src=" not in page  # nothing to fetch


def test_bad_requests_are_one_line_errors(runs):
    with serving(runs("dcgan")) as url:
        for path, code in [("/api/sample?seed=-1", 400), ("/api/sample?n=9999", 400), ("/api/sample?seed=x", 400),
                           ("/api/mix?a=1&b=2", 400), ("/api/nothing", 404)]:
            status, body, kind = get(url + path)
            assert status == code and kind == "application/json", path
            assert "\n" not in json.loads(body)["error"]
        status, body, _ = get(f"{url}/api/translate", upload_png())
        assert status == 400 and "translates none" in json.loads(body)["error"]
        request = urllib.request.Request(f"{url}/api/sample", headers={"Host": "evil.example:80"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code == 403  # a loopback demo answers to loopback names only (DNS rebinding)


def test_truncation_and_style_mixing_for_a_style_based_run(runs):
    with serving(runs("stylegan")) as url:
        info = json.loads(get(f"{url}/api/info")[1])
        assert info["style_based"] and 0 <= info["crossover"] <= info["num_ws"]
        full = png(get(f"{url}/api/sample?seed=1&n=4&truncation=1")[1])
        half = png(get(f"{url}/api/sample?seed=1&n=4&truncation=0.5")[1])
        mean = png(get(f"{url}/api/sample?seed=1&n=4&truncation=0")[1])
        assert not np.array_equal(full, half)
        tiles = [mean[2:18, 2:18], mean[2:18, 20:36], mean[20:36, 2:18], mean[20:36, 20:36]]
        assert all(np.array_equal(tiles[0], t) for t in tiles)  # psi 0: every seed draws the mean w's image
        mixes = {c: png(get(f"{url}/api/mix?a=1&b=2&crossover={c}")[1]) for c in (0, info["num_ws"])}
        assert mixes[0].shape == (18 + 2, 3 * 18 + 2)  # a, b, mixed
        a, b, mixed = (mixes[0][2:18, 2 + 18 * i: 18 + 18 * i] for i in range(3))
        assert np.array_equal(mixed, b) and not np.array_equal(a, b)  # crossover 0: all of b's styles
        assert np.array_equal(mixes[info["num_ws"]][2:18, 38:54], a)  # crossover num_ws: all of a's


def test_the_label_picker_of_a_conditional_run(runs):
    with serving(runs("cdcgan")) as url:
        info = json.loads(get(f"{url}/api/info")[1])
        assert info["conditional"] and info["num_classes"] == 10
        three = png(get(f"{url}/api/sample?seed=1&n=4&label=3")[1])
        assert not np.array_equal(three, png(get(f"{url}/api/sample?seed=1&n=4&label=4")[1]))
        assert np.array_equal(three, png(get(f"{url}/api/sample?seed=1&n=4&label=3")[1]))
        assert get(f"{url}/api/sample?seed=1&label=10")[0] == 400
        assert get(f"{url}/api/walk?a=1&b=2&frames=3&label=7")[0] == 200


def test_an_uploaded_png_is_translated_both_ways_at_the_model_size(runs):
    with serving(runs("cyclegan")) as url:
        info = json.loads(get(f"{url}/api/info")[1])
        assert info["directions"] == ["AtoB", "BtoA"] and not info["sample"]
        outs = {}
        for d in info["directions"]:
            status, body, kind = get(f"{url}/api/translate?direction={d}", upload_png(40, 30))
            assert status == 200 and kind == "image/png"
            outs[d] = png(body)
            assert outs[d].shape[:2] == (16, 16)  # the model's size, whatever the upload's
        assert not np.array_equal(outs["AtoB"], outs["BtoA"])
        status, body, _ = get(f"{url}/api/translate?direction=AtoB", b"not an image")
        assert status == 400 and "not a readable image" in json.loads(body)["error"]
        assert get(f"{url}/api/sample?seed=1")[0] == 400


def test_classification_of_an_uploaded_image(runs):
    with serving(runs("ssgan")) as url:
        info = json.loads(get(f"{url}/api/info")[1])
        assert info["classifier"] and info["sample"]  # its G draws too
        status, body, kind = get(f"{url}/api/classify", upload_png())
        assert status == 200 and kind == "application/json"
        out = json.loads(body)
        assert len(out["probabilities"]) == 10 and abs(sum(out["probabilities"]) - 1) < 1e-4
        assert out["predicted"] == int(np.argmax(out["probabilities"]))


def test_a_point_generator_draws_a_scatter_and_no_walk(runs):
    with serving(runs("points")) as url:
        info = json.loads(get(f"{url}/api/info")[1])
        assert info["points"] and info["sample"] and info["image_size"] is None
        a = png(get(f"{url}/api/sample?seed=1")[1])
        assert a.shape == (320, 320, 3) and not np.array_equal(a, png(get(f"{url}/api/sample?seed=2")[1]))
        assert get(f"{url}/api/walk?a=1&b=2")[0] == 400


def cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", "ganforge", "demo", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default, **kw)


def test_bad_run_dirs_and_a_busy_port_are_one_line_exit_2(runs, tmp_path):
    empty = tmp_path / "no-checkpoint"
    empty.mkdir()
    shutil.copy(runs("dcgan") / "config.yaml", empty / "config.yaml")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        cases = {"does not exist": [str(tmp_path / "missing")], "no checkpoint": [str(empty), "--port", "0"],
                 "is in use": [str(runs("dcgan")), "--port", port]}
        for expected, args in cases.items():
            out, err = cli(*args).communicate(timeout=120)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("error: "), err


def test_ctrl_c_stops_the_server_cleanly(runs):
    proc = cli(str(runs("dcgan")), "--port", "0")
    line = proc.stderr.readline()
    url = line.split("open ", 1)[1].split()[0]
    assert get(url + "api/sample?seed=0&n=4")[0] == 200
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0 and rest.strip() == "demo stopped"


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_the_page_in_headless_chromium_fetches_only_from_this_machine(runs, tmp_path):
    """Playwright drives the system Chromium (browsers cannot be downloaded here): the page loads, a new seed
    draws a new picture, an upload is translated, and every request the pages make goes to 127.0.0.1."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (drives headless Chromium)")
    (tmp_path / "digit.png").write_bytes(upload_png())
    requests, errors = [], []
    with serving(runs("dcgan")) as sampler, serving(runs("cyclegan")) as translator, \
            sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(sampler + "/")
        before = _shown(page, "#sample-img")
        page.fill("#seed", "7")
        page.wait_for_function("(s) => document.querySelector('#sample-img').src !== s", arg=before[0])
        after = _shown(page, "#sample-img")
        assert after[1] != before[1]  # other pixels, not just another blob URL
        page.goto(translator + "/")
        page.set_input_files("#upload", str(tmp_path / "digit.png"))
        page.wait_for_function("document.querySelector('#translate-out').naturalWidth > 0")
        assert page.evaluate("document.querySelector('#translate-out').naturalWidth") == 16
        assert "drawn in" in page.text_content("#translate-status")
        browser.close()
    assert errors == []
    web = [u for u in requests if urlsplit(u).scheme not in ("blob", "data")]
    assert web and all(urlsplit(u).hostname in ("127.0.0.1", "localhost") for u in web), requests


def _shown(page, selector: str) -> tuple[str, str]:
    """(src, pixels as a data URL) of an image once it has loaded."""
    page.wait_for_function(f"document.querySelector('{selector}').naturalWidth > 0")
    return page.evaluate("""(sel) => { const img = document.querySelector(sel), c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight; c.getContext('2d').drawImage(img, 0, 0);
        return [img.src, c.toDataURL()]; }""", selector)
