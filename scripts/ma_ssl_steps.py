"""Issue 35: does ``ssl-conv`` trained longer (600 / 1,200 steps) rank colour sets more like the class judges?

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/ma_ssl_steps.py SEED [WORKDIR]

``ganforge bench metric-agreement --data colour --candidates pixels,random-conv,ssl-conv`` with two more candidates,
``ssl-conv-600`` and ``ssl-conv-1200`` (the same encoder and augmentations, more contrastive steps). Run on seeds
never used to choose anything (3 and 4). Results are in docs/BENCHMARKS.md ("Metric agreement", "Two fresh seeds").
"""
import json
import sys
from pathlib import Path

from ganforge.bench import metric_agreement as ma
from ganforge.metrics.extractors.ssl_conv import SslSettings, ssl_conv

_default_featurizer = ma._featurizer


def featurizer(name, part, ssl_steps, log):
    """``ssl-conv-N``: ssl-conv trained for N steps; any other name as the bench has it."""
    if name.startswith("ssl-conv-"):
        ext = ssl_conv("cpu", reference=part.ref, settings=SslSettings(steps=int(name.rsplit("-", 1)[1])), log=log)
        return lambda x: ext(x)["features"].numpy()
    return _default_featurizer(name, part, ssl_steps, log)


if __name__ == "__main__":
    seed = int(sys.argv[1])
    work = Path(sys.argv[2] if len(sys.argv) > 2 else "runs/ma-ssl-steps")
    ma._featurizer = featurizer
    results = ma.main(["colour"], ["pixels", "random-conv", "ssl-conv", "ssl-conv-600", "ssl-conv-1200"], seed=seed,
                      gan_root=work / f"gan-runs-{seed}", command=f"python scripts/ma_ssl_steps.py {seed}")
    r = results[0]
    work.mkdir(parents=True, exist_ok=True)
    (work / f"rho-{seed}.json").write_text(json.dumps({k: r[k] for k in ("rho", "rho_single", "flagged", "judge")},
                                                      indent=1, default=str) + "\n")
