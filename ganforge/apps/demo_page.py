"""The one page of ``ganforge demo``: inline style and script, no font, icon or library fetched from anywhere.

The run's settings (``Demo.info()``) are written into the page, and the script shows only the panels they allow;
every picture comes from this server's ``/api/...`` endpoints as a PNG, every class probability as JSON.
"""
from __future__ import annotations

import html
import json

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 880px; padding: 12px; color: #222; }
h1 { font-size: 20px; margin: 4px 0; } h2 { font-size: 17px; margin: 0 0 8px; }
section { border: 1px solid #ddd; border-radius: 8px; padding: 10px 12px; margin: 12px 0; }
label { margin-right: 14px; white-space: nowrap; } input[type=number] { width: 7em; }
img.out { image-rendering: pixelated; display: block; margin: 8px 0; background: #eee; max-width: 100%; }
.row { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.note { color: #666; font-size: 13px; } .err { color: #b00; } .bar { background: #4a7bd0; height: 12px; }
table.probs td { padding: 0 6px; }
"""

BODY = """
<h1>ganforge demo: <span id="name"></span></h1>
<div class="note" id="about"></div>
<section id="samples" hidden><h2>Samples</h2>
  <label>seed <input id="seed" type="number" min="0" value="0"></label>
  <button id="prev">&minus;1</button> <button id="next">+1</button> <button id="random">random</button>
  <label id="n-label">images <select id="n"><option>1</option><option>4</option><option>9</option><option selected>16</option>
    <option>25</option><option>36</option><option>64</option></select></label>
  <label class="cond" hidden>class <select id="label"></select></label>
  <label class="style" hidden>truncation &psi; <input id="psi" type="range" min="0" max="1" step="0.05" value="1">
    <span id="psi-value">1.00</span></label>
  <img class="out" id="sample-img" alt="samples"><div class="note" id="sample-status"></div>
</section>
<section id="mixing" hidden><h2>Style mixing</h2>
  <label>seed A <input id="mix-a" type="number" min="0" value="1"></label>
  <label>seed B <input id="mix-b" type="number" min="0" value="2"></label>
  <label>crossover <input id="crossover" type="range" min="0" step="1"> <span id="crossover-value"></span></label>
  <img class="out" id="mix-img" alt="style mixing">
  <div class="note">A, B, then B with its first <i>crossover</i> (coarse) styles from A. Uses the truncation above.</div>
  <div class="note" id="mix-status"></div>
</section>
<section id="walk" hidden><h2>Latent walk</h2>
  <label>from seed <input id="walk-a" type="number" min="0" value="1"></label>
  <label>to seed <input id="walk-b" type="number" min="0" value="2"></label>
  <label>frames <input id="frames" type="number" min="2" value="8"></label>
  <img class="out" id="walk-img" alt="latent walk"><div class="note" id="walk-space"></div>
  <div class="note" id="walk-status"></div>
</section>
<section id="translate" hidden><h2>Translate an image</h2>
  <input id="upload" type="file" accept="image/*"> <span id="directions"></span>
  <div class="row"><div>input<img class="out" id="translate-in" data-width="256" alt="input"></div>
    <div>output<img class="out" id="translate-out" data-width="256" alt="translation"></div></div>
  <div class="note" id="translate-status"></div>
</section>
<section id="classify" hidden><h2>Classify an image</h2>
  <div class="note">The semi-supervised discriminator's class probabilities.</div>
  <input id="classify-upload" type="file" accept="image/*">
  <div class="row"><img class="out" id="classify-in" data-width="256" alt="input"><table class="probs" id="classify-out"></table></div>
  <div class="note" id="classify-status"></div>
</section>
"""

SCRIPT = r"""
const $ = (id) => document.getElementById(id);
const latest = {};  // per panel: the newest request's number, so a slow older answer never overwrites a newer one

function zoom(img) {  // pixel art: enlarge by a whole factor to about its data-width (420 px unless set)
  const target = +(img.dataset.width || 420);
  img.onload = () => { img.style.width = img.naturalWidth * Math.max(1, Math.floor(target / img.naturalWidth)) + 'px'; };
}
async function show(panel, img, url, options) {
  const ticket = (latest[panel] = (latest[panel] || 0) + 1), status = $(panel + '-status'), t0 = performance.now();
  try {
    const res = await fetch(url, options);
    if (!res.ok) throw new Error((await res.json()).error);
    const blob = await res.blob();
    if (ticket !== latest[panel]) return;
    if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    status.className = 'note';
    status.textContent = 'drawn in ' + Math.round(performance.now() - t0) + ' ms';
  } catch (e) { status.className = 'err'; status.textContent = e.message; }
}
function query(params) {
  return Object.entries(params).filter(([k, v]) => v !== null && v !== '').map(([k, v]) => k + '=' + encodeURIComponent(v)).join('&');
}
function common() {
  return {truncation: INFO.style_based ? $('psi').value : null, label: INFO.conditional ? $('label').value : null};
}
function drawSamples() {
  show('sample', $('sample-img'), '/api/sample?' + query({seed: $('seed').value, n: INFO.points ? null : $('n').value, ...common()}));
}
function drawMix() {
  show('mix', $('mix-img'), '/api/mix?' + query({a: $('mix-a').value, b: $('mix-b').value, crossover: $('crossover').value, truncation: $('psi').value}));
}
function drawWalk() {
  show('walk', $('walk-img'), '/api/walk?' + query({a: $('walk-a').value, b: $('walk-b').value, frames: $('frames').value, ...common()}));
}
function direction() { const r = document.querySelector('input[name=direction]:checked'); return r ? r.value : 'AtoB'; }
function translateFile() {
  const file = $('upload').files[0];
  if (!file) return;
  $('translate-in').src = URL.createObjectURL(file);
  show('translate', $('translate-out'), '/api/translate?direction=' + direction(), {method: 'POST', body: file});
}
async function classifyFile() {
  const file = $('classify-upload').files[0], status = $('classify-status');
  if (!file) return;
  $('classify-in').src = URL.createObjectURL(file);
  try {
    const res = await fetch('/api/classify', {method: 'POST', body: file}), out = await res.json();
    if (!res.ok) throw new Error(out.error);
    $('classify-out').innerHTML = out.probabilities.map((p, k) => '<tr' + (k === out.predicted ? ' style="font-weight:bold"' : '') +
      '><td>' + k + '</td><td><div class="bar" style="width:' + Math.round(p * 200) + 'px"></div></td><td>' + (100 * p).toFixed(1) + '%</td></tr>').join('');
    status.className = 'note'; status.textContent = 'class ' + out.predicted + ', ' + (100 * out.confidence).toFixed(1) + '%';
  } catch (e) { status.className = 'err'; status.textContent = e.message; }
}
function setUp() {
  $('name').textContent = INFO.name;
  $('about').textContent = INFO.family + ' run ' + INFO.run + (INFO.image_size ? ', ' + INFO.image_size + ' px' : '');
  document.querySelectorAll('img.out').forEach(zoom);
  if (INFO.sample) {
    $('samples').hidden = false;
    if (INFO.points) $('n-label').hidden = true;
    ['seed', 'n', 'label'].forEach((id) => $(id).addEventListener('change', drawSamples));
    $('seed').addEventListener('input', drawSamples);
    $('prev').onclick = () => { $('seed').value = Math.max(0, +$('seed').value - 1); drawSamples(); };
    $('next').onclick = () => { $('seed').value = +$('seed').value + 1; drawSamples(); };
    $('random').onclick = () => { $('seed').value = Math.floor(Math.random() * 100000); drawSamples(); };
    drawSamples();
  }
  if (INFO.conditional) {
    document.querySelectorAll('.cond').forEach((e) => { e.hidden = false; });
    $('label').innerHTML = '<option value="">every class</option>' +
      Array.from({length: INFO.num_classes}, (_, k) => '<option>' + k + '</option>').join('');
  }
  if (INFO.style_based) {
    document.querySelectorAll('.style').forEach((e) => { e.hidden = false; });
    $('mixing').hidden = false;
    $('crossover').max = INFO.num_ws; $('crossover').value = INFO.crossover;
    $('crossover-value').textContent = INFO.crossover + ' of ' + INFO.num_ws;
    $('psi').addEventListener('input', () => { $('psi-value').textContent = (+$('psi').value).toFixed(2); drawSamples(); drawMix(); });
    $('crossover').addEventListener('input', () => { $('crossover-value').textContent = $('crossover').value + ' of ' + INFO.num_ws; drawMix(); });
    ['mix-a', 'mix-b'].forEach((id) => $(id).addEventListener('change', drawMix));
    drawMix();
  }
  if (INFO.sample && !INFO.points) {
    $('walk').hidden = false; $('frames').max = INFO.max_frames;
    $('walk-space').textContent = INFO.style_based ? 'a straight line in w' : 'a spherical path (slerp) in z';
    ['walk-a', 'walk-b', 'frames'].forEach((id) => $(id).addEventListener('change', drawWalk));
    if (INFO.conditional) $('label').addEventListener('change', drawWalk);
    drawWalk();
  }
  if (INFO.directions.length) {
    $('translate').hidden = false;
    $('directions').innerHTML = INFO.directions.map((d, i) => '<label><input type="radio" name="direction" value="' + d + '"' +
      (i ? '' : ' checked') + '> ' + d.replace('to', ' \u2192 ') + '</label>').join('');
    $('upload').addEventListener('change', translateFile);
    document.querySelectorAll('input[name=direction]').forEach((r) => r.addEventListener('change', translateFile));
  }
  if (INFO.classifier) {
    $('classify').hidden = false;
    $('classify-upload').addEventListener('change', classifyFile);
  }
}
setUp();
"""


def page(info: dict) -> str:
    """The whole page for a run's settings; ``</`` in the JSON is escaped so no value can end the script."""
    data = json.dumps(info).replace("</", "<\\/")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<link rel='icon' href='data:,'><title>ganforge demo: {html.escape(str(info.get('name')))}</title>"
            f"<style>{STYLE}</style></head><body>{BODY}<script>const INFO = {data};{SCRIPT}</script></body></html>")
