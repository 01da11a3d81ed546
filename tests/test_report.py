"""ganforge report: a self-contained page (every picture a data URI, no request leaves it), a slider over the
grids, only the differing config keys when comparing; opened in headless Chromium where it is installed."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from ganforge.apps.report import write_report
from ganforge.apps.training import train

quiet = dict(progress=False, log=lambda s: None)
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)

# appended to a copy of the page: checks every image, moves the first slider, lists fetched resources
SELF_TEST = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.alt; });
  var s = document.querySelector('input.slider'), g = document.getElementById('grid0');
  var before = g.src; s.value = 0; s.dispatchEvent(new Event('input'));
  var out = document.createElement('pre'); out.id = 'selftest';
  out.textContent = JSON.stringify({images: imgs.length, broken: broken, changed: g.src !== before,
    label: document.getElementById('label0').textContent,
    requests: performance.getEntriesByType('resource').map(function (e) { return e.name; })});
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from conftest import tiny_config

    root = tmp_path_factory.mktemp("runs")
    train(tiny_config("dcgan", steps=16), root / "a", **quiet)  # two epochs of 8 steps: three grids
    train(tiny_config("dcgan", steps=16, lr_g=1e-3), root / "b", **quiet)
    return root / "a", root / "b"


def test_every_finished_run_has_a_self_contained_report(two_runs):
    page = (two_runs[0] / "report.html").read_text()
    srcs = re.findall(r"src='([^']*)'", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in page and "https://" not in page and "<link" not in page
    frames = sorted((two_runs[0] / "samples").glob("*.png"))
    assert f"max='{len(frames) - 1}'" in page and len(frames) == 3
    assert "Training curves" in page and "name: tiny-dcgan" in page  # the resolved config, in full


def test_a_comparison_shows_only_the_keys_that_differ(two_runs, tmp_path):
    out = write_report(list(two_runs), tmp_path / "cmp.html")
    page = out.read_text()
    diff = page[page.index("the keys that differ"):page.index("</table>", page.index("the keys that differ"))]
    assert "train.lr_g" in diff and "model.family" not in diff
    assert "Final samples side by side" in page and page.count("class='slider'") == 2


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_the_page_works_in_headless_chromium(two_runs, tmp_path):
    page = (two_runs[0] / "report.html").read_text().replace("</body>", SELF_TEST + "</body>")
    copy = tmp_path / "selftest.html"
    copy.write_text(page)
    res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", copy.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r"<pre id=\"selftest\">(.*?)</pre>", res.stdout, re.S)
    assert found, res.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["images"] >= 3 and result["broken"] == []
    assert result["changed"] and result["label"] == "step 0"  # the slider showed the untrained grid
    assert result["requests"] == []  # nothing fetched: every picture is inside the page


EVALUATED = {"source": "run", "ref": "folder:/data/icons", "extractor": "mnist-cnn", "n_generated": 2000,
             "n_reference": 1500, "metrics": {"fid[mnist-cnn]": 12.5, "precision[mnist-cnn]": 0.7,
                                              "copies[mnist-cnn]": 0.02},
             "protocol": {"extractor": "mnist-cnn", "weights": "sha256:" + "ab" * 32, "resize_filter": "bilinear",
                          "n_generated": 2000, "n_reference": 1500, "reference": "folder:/data/icons",
                          "reference_split": "all"},
             "copies": {"share": 0.02, "n_training": 1500, "rule": "the 5% rule", "closest": []}}


def test_the_headline_says_the_score_its_extractor_and_the_copy_check(two_runs, tmp_path):
    """eval.json first on the page, one line per run: figures, extractor, reference and split, weights, copies."""
    from ganforge.apps.model_card import _metrics

    run = tmp_path / "run"
    shutil.copytree(two_runs[0], run)
    (run / "eval.json").write_text(json.dumps(EVALUATED))
    page = write_report([run], tmp_path / "one.html").read_text()
    line = re.search(r"<p class='headline'>(.*?)</p>", page).group(1)
    assert "FID 12.50" in line and "mnist-cnn" in line and "1,500 images of folder:/data/icons (split all)" in line
    assert "sha256:abababab" in line and "copy check: 2.0%" in line and "copies 2.0%" in line
    assert page.index("class='headline'") < page.index("<h2>Metrics</h2>")
    both = write_report([run, two_runs[1]], tmp_path / "two.html").read_text()
    assert both.count("class='headline'") == 1 and "<b>run</b>" in both  # runs without eval.json: no line
    assert "modes dropped" not in line
    (run / "eval.json").write_text(json.dumps({**EVALUATED, "diversity": {"coverage": 0.4, "expected_coverage": 0.97,
                                                                          "density": 1.1, "modes_dropped": True}}))
    line = re.search(r"<p class='headline'>(.*?)</p>", write_report([run], tmp_path / "3.html").read_text()).group(1)
    assert "modes dropped: coverage 0.40 where the data itself reaches 0.97" in line
    card = _metrics(EVALUATED)
    assert "sha256:abab" in card and "reference split `all`" in card and "2.0% of the samples" in card
