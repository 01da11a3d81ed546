"""torch.compile modes on the bench's DCGAN 64x64 (ngf=ndf=64, channels_last, bf16 autocast) on a GPU: for each mode,
whether one forward+backward of G and D compiles and runs, and how long 20 such passes then take.

The earlier GPU run saw ``max-autotune-no-cudagraphs`` fail with a stride assertion on the 4x4 channels_last
tensors; this records which modes work on the card at hand, one JSON line per mode.

    python scripts/gpu_compile_probe.py default max-autotune-no-cudagraphs
"""
from __future__ import annotations

import copy
import json
import sys
import time

import torch

from ganforge.config import model_config
from ganforge.families import build_models


def one_pass(G, D, z, real) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = D(G(z)).float().mean() - D(real).float().mean()
    loss.backward()


def probe(mode: str, G0, D0, z, real) -> dict:
    G, D = copy.deepcopy(G0), copy.deepcopy(D0)
    t0 = time.perf_counter()
    try:
        if mode != "eager":
            G.compile(mode=mode)
            D.compile(mode=mode)
        one_pass(G, D, z, real)
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        for _ in range(20):
            one_pass(G, D, z, real)
        torch.cuda.synchronize()
        return {"mode": mode, "ok": True, "first_pass_s": round(compile_s, 2),
                "ms_per_pass": round((time.perf_counter() - t1) / 20 * 1e3, 3)}
    except Exception as exc:  # noqa: BLE001 - the failure is the finding
        text = " ".join(str(exc).split())
        return {"mode": mode, "ok": False, "error": f"{type(exc).__name__}: {text[:400]}"}


def main(modes: list[str]) -> None:
    mc = model_config(family="dcgan", image_size=64, channels=3, g_width=64, d_width=64)
    torch.manual_seed(0)
    G, D = (m.to("cuda", memory_format=torch.channels_last) for m in build_models(mc))
    z = torch.randn(64, mc.z_dim, device="cuda")
    real = torch.rand(64, 3, 64, 64, device="cuda").contiguous(memory_format=torch.channels_last)
    for mode in ["eager", *modes]:
        print(json.dumps(probe(mode, G, D, z, real)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["default", "max-autotune-no-cudagraphs"])
