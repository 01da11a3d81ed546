"""The pictures of a finished run: progress.gif, losses.png, stats.png, the family's own, and real_vs_fake.png
(drawn by the run's output kind). The report is written above the loop, from these files."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ganforge import viz
from ganforge.families.contract import Trainer


def write_pictures(run_dir: Path, trainer: Trainer, real_vs_fake: Callable[[], None],
                   log: Callable[[str], None]) -> None:
    """Every picture of the run; a failure is one warning: pictures must never cost the user a finished run."""
    try:
        frames = sorted((run_dir / "samples").glob("e*-s*.png"))
        if frames:
            viz.save_progress_gif(frames, run_dir / "progress.gif")
            trainer.finish_pictures(run_dir, frames)
        if (run_dir / "metrics.jsonl").is_file():
            for plot, name in ((viz.plot_losses, "losses.png"), (viz.plot_stats, "stats.png")):
                try:
                    plot(run_dir / "metrics.jsonl", run_dir / name, trainer.loss_panels)
                except ValueError:
                    pass  # nothing of that kind logged
        real_vs_fake()
    except Exception as exc:  # noqa: BLE001
        log(f"warning: could not draw the run's pictures: {exc}")
