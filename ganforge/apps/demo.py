"""``ganforge demo RUN_DIR``: a local web page to try a trained model, served from this machine only.

What the page offers follows the family's declared traits, never its name: samples by seed for noise-to-image
runs (a scatter for point generators), a truncation slider and style mixing for style-based ones, a label picker
for conditional ones, a latent walk between two seeds, translation of an uploaded image (each direction the family
has), and classification of an uploaded image when the discriminator classifies.

Why the standard library (``http.server``) and not Gradio: the page is one self-contained HTML file with inline
script and style (``apps/demo_page.py``), so it makes no request off the machine by construction, needs no
dependency, and the server is listening about a second after the command starts, most of it loading torch and
the checkpoint; the numbers are in docs/USING_A_MODEL.md. Every model call holds one lock: the CPU's cores are
better spent on one request at a time than shared between several.
"""
from __future__ import annotations

import errno
import io
import json
import threading
import time
import warnings
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np
import torch

from ganforge.errors import UserError

MAX_SAMPLES = 64  # images in one grid: a page, not a data set
MAX_FRAMES = 16  # frames of one walk
MAX_POINTS = 4096  # points in one scatter
MAX_UPLOAD = 16 * 2 ** 20  # bytes of one uploaded image
MAX_UPLOAD_PIXELS = 4096 * 4096  # pixels its header may claim: checked before decoding (a PNG of 429 bytes can
# claim 12000x12000, 430 MB decoded)
BACKLOG = 128  # pending connections the socket holds: http.server's 5 resets a burst of browser requests
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class Demo:
    """What one run can do on the page, loaded once: the generator, the translators per direction, the classifier."""
    run_dir: Path
    config: object  # the run's RunConfig
    generator: Optional[object] = None  # apps.sampling.TrainedGenerator
    translators: dict = field(default_factory=dict)  # direction -> apps.translate.Translator
    classifier: Optional[object] = None  # apps.classify.Classifier
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def points(self) -> bool:
        from ganforge.families.outputs import output_of

        return not output_of(self.config.model).images

    def info(self) -> dict:
        """The page's settings: which panels to show and the ranges of their controls."""
        mc, g = self.config.model, self.generator
        style = g is not None and g.has_w
        classes = getattr(mc, "num_classes", None)
        return {"name": self.config.name, "family": mc.family, "run": str(self.run_dir),
                "image_size": None if self.points else getattr(mc, "image_size", None),
                "channels": None if self.points else getattr(mc, "channels", None),
                "sample": g is not None, "points": self.points, "style_based": style,
                "num_ws": g.module.num_ws if style else None,
                "crossover": getattr(g.module, "default_crossover", None) if style else None,
                "conditional": g is not None and g.conditional, "num_classes": classes,
                "directions": list(self.translators), "classifier": self.classifier is not None,
                "max_samples": MAX_SAMPLES, "max_frames": MAX_FRAMES}


# ------------------------------------------------------------------------------------------------------- loading
def load_demo(run_dir: Path, device: str = "cpu") -> Demo:
    """Every model the page needs, from the run's newest good checkpoint; a clear error when there is none."""
    from ganforge.config import load_run_config
    from ganforge.families import get_family

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist: pass a directory 'ganforge train' wrote")
    cfg = load_run_config(run_dir)
    family = get_family(cfg.model.family)
    demo = Demo(run_dir, cfg)
    if family.translation:
        from ganforge.apps.translate import load_translator

        demo.translators = {d: load_translator(run_dir, d, device) for d in (family.directions or {"AtoB": None})}
        return demo
    from ganforge.apps.sampling import load_generator

    demo.generator = load_generator(run_dir, device)
    if family.classifier:
        from ganforge.apps.classify import load_classifier

        demo.classifier = load_classifier(run_dir, device)
    return demo


# ------------------------------------------------------------------------------------------------------ pictures
def png_grid(images: torch.Tensor, nrow: Optional[int] = None, padding: int = 2) -> bytes:
    """[-1, 1] images (N, C, H, W) as one PNG grid (grey stays 1-channel); one image with padding 0 is itself."""
    from PIL import Image

    from ganforge.viz import image_grid

    grid = image_grid(torch.nan_to_num(images, nan=0.0), nrow=nrow, padding=padding)  # NaN: mid-grey, as viz's
    grid = (grid * 255).round().clamp(0, 255).to(torch.uint8)
    arr = grid[0].numpy() if images.shape[1] == 1 else grid.permute(1, 2, 0).contiguous().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def png_points(points: torch.Tensor, size: int = 320) -> bytes:
    """2D points as a scatter PNG, centred on their median and scaled to their 99th-percentile spread."""
    from PIL import Image, ImageDraw

    p = points.float().numpy()
    centre = np.median(p, axis=0)
    half = max(float(np.quantile(np.abs(p - centre), 0.99)), 1e-6) * 1.1
    xy = (p - centre) / half * (size / 2 - 4) + size / 2
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    for x, y in xy:
        draw.ellipse((x - 1.5, size - y - 1.5, x + 1.5, size - y + 1.5), fill=(30, 90, 200))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def decode_upload(data: bytes) -> torch.Tensor:
    """An uploaded file as uint8 (1, 3, H, W); one line when it is no image."""
    from PIL import Image

    from ganforge.data.imageops import error_text, to_channels

    if not data:
        raise UserError("no image in the request: upload a PNG or JPEG file")
    try:
        with warnings.catch_warnings():  # PIL's bomb warning: the size is checked here, below its own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # lazy: reads the header only
    except Exception as exc:  # noqa: BLE001 - any failure to read the header is the user's file
        raise UserError(f"the upload is not a readable image ({error_text(exc, 100)})") from None
    with img:
        w, h = img.size
        if w * h > MAX_UPLOAD_PIXELS:
            raise UserError(f"the uploaded image is {w}x{h} pixels: at most {MAX_UPLOAD_PIXELS:,} pixels "
                            "(e.g. 4096x4096); shrink it first")
        try:
            rgb = np.asarray(to_channels(img, 3), dtype=np.uint8)
        except Exception as exc:  # noqa: BLE001 - any decode failure is the user's file
            raise UserError(f"the upload is not a readable image ({error_text(exc, 100)})") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None]


# ------------------------------------------------------------------------------------------------------- actions
class Params:
    """A request's query string, read as bounded integers and floats: a bad value is one line, status 400."""

    def __init__(self, query: str):
        self.values = {k: v[-1] for k, v in parse_qs(query).items()}

    def number(self, key: str, default: Optional[float], lo: float, hi: float, kind: type = int):
        text = self.values.get(key, "")
        if text in ("", "all", "null"):
            return default
        try:
            value = kind(text)
        except ValueError:
            raise UserError(f"{key}={text!r}: expected a number") from None
        if not lo <= value <= hi:  # NaN fails this too
            raise UserError(f"{key}={value}: choose from {lo} to {hi}")
        return value

    def refuse(self, key: str, why: str) -> None:
        """A parameter this run cannot honour is an error, not silently ignored."""
        if self.values.get(key, "") not in ("", "null"):
            raise UserError(f"{key}={self.values[key]!r}: {why}")


def _generator(demo: Demo):
    if demo.generator is None:
        raise UserError("this run translates images: it draws nothing from noise")
    return demo.generator


def _style(demo: Demo, p: Params, key: str = "truncation") -> Optional[float]:
    """psi for style-based generators, None (the call's default) for the others."""
    g = _generator(demo)
    if g.has_w:
        return p.number(key, 1.0, 0.0, 1.0, float)
    p.refuse(key, f"this run's {demo.config.model.family!r} generator is not style-based: it has no truncation")
    return None


def _label(demo: Demo, p: Params) -> Optional[int]:
    g = _generator(demo)
    if g.conditional:
        return p.number("label", None, 0, g.num_classes - 1)
    p.refuse("label", f"this run's {demo.config.model.family!r} generator is not conditional: it takes no label")
    return None


def sample(demo: Demo, p: Params) -> bytes:
    """A grid of ``n`` samples of ``seed`` (every class in turn, or one ``label``); a scatter for points."""
    g = _generator(demo)
    seed = p.number("seed", 0, 0, 2 ** 31 - 1)
    label, psi = _label(demo, p), _style(demo, p)  # checked for every run: one without them refuses them
    if demo.points:
        return png_points(g.sample(p.number("n", 1024, 1, MAX_POINTS), seed=seed,
                                   labels=None if label is None else [label]))
    n = p.number("n", 16, 1, MAX_SAMPLES)
    images = g.sample(n, seed=seed, labels=None if label is None else [label], truncation=psi)
    return png_grid(images)


def mix(demo: Demo, p: Params) -> bytes:
    """Seed a, seed b, and b's image with its first ``crossover`` (coarse) styles from a, in one row."""
    from ganforge.apps.latents import mixing_grid

    g = _generator(demo)
    g.require_w("style mixing")
    a, b = p.number("a", 1, 0, 2 ** 31 - 1), p.number("b", 2, 0, 2 ** 31 - 1)
    cut = p.number("crossover", None, 0, g.module.num_ws)
    images, _ = mixing_grid(g, [a], [b], cut, truncation=_style(demo, p))
    return png_grid(images[[2, 1, 3]], nrow=3)  # the grid is [corner, b, a, mixed]


def walk(demo: Demo, p: Params) -> bytes:
    """``frames`` images from seed a to seed b: slerp in z, or lerp in w for style-based generators."""
    from ganforge.apps.latents import interpolation_frames

    g = _generator(demo)
    if demo.points:
        raise UserError("this run generates 2D points: a walk needs an image generator")
    seeds = [p.number("a", 1, 0, 2 ** 31 - 1), p.number("b", 2, 0, 2 ** 31 - 1)]
    frames = p.number("frames", 8, 2, MAX_FRAMES)
    images = interpolation_frames(g, seeds, frames, "w" if g.has_w else "z", _label(demo, p), _style(demo, p))
    return png_grid(images, nrow=frames)


def _model_input(demo: Demo, data: bytes) -> torch.Tensor:
    """An upload brought to the model's size the way its training data were (``ganforge classify``'s rule)."""
    from ganforge.apps.classify import to_model_input

    return to_model_input(decode_upload(data), demo.config)


def translate(demo: Demo, p: Params, data: bytes) -> bytes:
    """The uploaded image translated in ``direction``, at the model's size."""
    direction = p.values.get("direction", "AtoB")
    if direction not in demo.translators:
        have = ", ".join(demo.translators) or "none: this run draws from noise"
        raise UserError(f"direction={direction!r}: this run translates {have}")
    return png_grid(demo.translators[direction](_model_input(demo, data)), nrow=1, padding=0)


def classify(demo: Demo, data: bytes) -> dict:
    """The discriminator's class probabilities for the uploaded image."""
    if demo.classifier is None:
        raise UserError("this run's discriminator does not classify")
    probs = demo.classifier.probabilities(_model_input(demo, data))[0]
    return {"probabilities": [round(float(v), 6) for v in probs], "predicted": int(probs.argmax()),
            "confidence": float(probs.max())}


# -------------------------------------------------------------------------------------------------------- server
GETS: dict[str, Callable[[Demo, Params], bytes]] = {"/api/sample": sample, "/api/mix": mix, "/api/walk": walk}


class Handler(BaseHTTPRequestHandler):
    """The page, its settings, and the JSON/PNG endpoints; every error is JSON ``{"error": one line}``."""
    server_version = "ganforge-demo"
    demo: Demo  # set on the subclass ``make_server`` builds
    loopback_only = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass  # one line per request would drown the URL the user needs

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "this demo answers only to 127.0.0.1 / localhost")
        if url.path == "/":
            from ganforge.apps.demo_page import page

            return self._send(page(self.demo.info()).encode(), "text/html; charset=utf-8")
        if url.path == "/api/info":
            return self._send(json.dumps(self.demo.info()).encode(), "application/json")
        action = GETS.get(url.path)
        if action is None:
            return self._error(HTTPStatus.NOT_FOUND, f"no page {url.path}")
        self._run(lambda: (action(self.demo, Params(url.query)), "image/png"))

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "this demo answers only to 127.0.0.1 / localhost")
        if url.path not in ("/api/translate", "/api/classify"):
            return self._error(HTTPStatus.NOT_FOUND, f"no endpoint {url.path}")
        length = self._content_length()
        if length is None:
            return None
        data = self.rfile.read(length)
        if url.path == "/api/translate":
            return self._run(lambda: (translate(self.demo, Params(url.query), data), "image/png"))
        self._run(lambda: (json.dumps(classify(self.demo, data)).encode(), "application/json"))

    def _content_length(self) -> Optional[int]:
        """The body's declared size, refused (and the connection closed, the body unread) unless it is a whole
        number from 0 to MAX_UPLOAD: ``rfile.read(-1)`` would read without limit."""
        text = self.headers.get("Content-Length")
        status, why = None, ""
        if text is None:
            status, why = HTTPStatus.LENGTH_REQUIRED, "an upload needs a Content-Length header"
        elif not text.strip().isdigit():
            status, why = HTTPStatus.BAD_REQUEST, f"Content-Length {text[:40]!r} is not a byte count"
        elif int(text) > MAX_UPLOAD:
            status, why = HTTPStatus.REQUEST_ENTITY_TOO_LARGE, (f"upload of {int(text):,} bytes (Content-Length): "
                                                               f"at most {MAX_UPLOAD:,}")
        if status is None:
            return int(text)
        self.close_connection = True  # the unread body must not be taken for the next request
        self._error(status, why)
        return None

    def _run(self, work: Callable[[], tuple[bytes, str]]) -> None:
        """One model call at a time; a UserError is the client's mistake (400), anything else the server's (500)."""
        t0 = time.perf_counter()
        try:
            with self.demo.lock:
                body, kind = work()
        except UserError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except Exception as exc:  # noqa: BLE001 - reported to the page, the server keeps serving
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, " ".join(f"{type(exc).__name__}: {exc}".split()))
        self._send(body, kind, {"X-Elapsed-Ms": f"{(time.perf_counter() - t0) * 1e3:.1f}"})

    def _host_ok(self) -> bool:
        """A loopback server refuses other Host names: a web page elsewhere cannot reach it by DNS rebinding."""
        header = self.headers.get("Host") or ""
        host = header.split("]")[0] + "]" if header.startswith("[") else header.rsplit(":", 1)[0]
        return not self.loopback_only or host in LOOPBACK

    def _send(self, body: bytes, kind: str, headers: Optional[dict] = None, status: int = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(json.dumps({"error": message}).encode(), "application/json", status=status)


class Server(ThreadingHTTPServer):
    """A thread per request, a deep listen backlog, and quiet about clients that hang up."""
    request_queue_size = BACKLOG
    daemon_threads = True  # Ctrl-C never waits for a browser's open connection

    def handle_error(self, request, client_address) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):  # a closed tab or a cancelled fetch: not an error
            return
        super().handle_error(request, client_address)


def make_server(host: str, port: int) -> ThreadingHTTPServer:
    """The listening socket, before any model loads: a port in use is one line at once, not after the load."""
    handler = type("DemoHandler", (Handler,), {"loopback_only": host in LOOPBACK})
    try:
        server = Server((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use: pick another with --port (0 picks a free one)") from None
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return server


def attach(server: ThreadingHTTPServer, demo: Demo) -> None:
    server.RequestHandlerClass.demo = demo


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def warm_up(demo: Demo) -> None:
    """Every model once before the URL is shown: the first request would otherwise pay for lazy imports
    (torchvision's grid, the image decoding and resizing, PIL's PNG encoder) and the first forward pass, seconds
    on a CPU."""
    if demo.generator is not None:
        sample(demo, Params("n=1"))
    if demo.translators or demo.classifier is not None:
        x = _model_input(demo, png_grid(torch.zeros(1, 3, 8, 8), nrow=1, padding=0))  # an upload's whole path
        for translator in demo.translators.values():
            png_grid(translator(x), nrow=1, padding=0)
        if demo.classifier is not None:
            demo.classifier.probabilities(x)


def serve(run_dir: Path, host: str = "127.0.0.1", port: int = 7860, device: str = "cpu", log=print) -> None:
    """Bind, load, serve until Ctrl-C, then close the socket; returns normally after Ctrl-C."""
    server = make_server(host, port)
    try:
        demo = load_demo(run_dir, device)
        warm_up(demo)
        attach(server, demo)
        if host not in LOOPBACK:
            log(f"warning: listening on {host}: anyone who can reach this machine can use the demo")
        log(f"ganforge demo of {run_dir}: open {url_of(server)} (Ctrl-C stops it)")
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        log("demo stopped")
    finally:
        server.server_close()
