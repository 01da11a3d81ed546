"""Shared by the benchmarks: the machine's description and marked blocks in ``docs/BENCHMARKS.md``.

Each benchmark owns one block between ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->``; rerunning it
replaces that block and leaves the rest of the file alone.
"""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

from ganforge.io_utils import atomic_write_text


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def block_rows(markdown: str, name: str, header: str | None = None) -> list[str]:
    """The table rows (lines starting ``| ``) of the block ``name`` in ``markdown``; none when the block is
    missing, or when ``header`` is given and the block has another layout (its rows are dropped, not misread)."""
    start, end = markers(name)
    if start not in markdown or end not in markdown:
        return []
    block = markdown[markdown.index(start):markdown.index(end)]
    if header is not None and header not in block:
        return []
    return [line for line in block.splitlines() if line.startswith("| ")]


def cpu_name() -> str:
    """The processor's model name, with whether it has AMX / bf16 units (they decide bf16 speed on CPU)."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == (platform.processor() or platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        return cpu
    if not flags:
        return cpu
    units = [name for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16")) if flag in flags]
    return f"{cpu} ({', '.join(units) if units else 'no AMX or bf16 units'})"


def machine_info(device: torch.device) -> dict[str, object]:
    cpu = cpu_name()
    info: dict[str, object] = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_avg": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,  # flags contended timings
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda  # the card, torch and CUDA: what a GPU figure needs beside it
    return info


def replace_block(text: str, name: str, block: str) -> str:
    """``text`` with the block called ``name`` replaced by ``block`` (appended when there is none)."""
    start, end = markers(name)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + sep + block + "\n"


def write_block(path: Path, name: str, block: str) -> None:
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    atomic_write_text(path, replace_block(old, name, block))
