"""Peak-RSS probe for ExecuTorch: run as a script in a fresh interpreter.

Imports numpy, torch and ExecuTorch's runtime bindings only (not the ``executorch.exir``
compiler). torch is unavoidable: the bindings take and return ``torch.Tensor`` and crash when
torch's Python module is not loaded. The RSS after the imports is reported too, so the model's
own cost (peak − baseline) can be told apart from the interpreter's and libtorch's.

Usage: python _rss_probe_et.py MODEL.pte THREADS X.npy
    -> prints {"peak_rss_mb": ..., "baseline_rss_mb": ..., "torch_imported": true}
"""

import json
import os
import resource
import sys

import numpy as np
import torch


def main() -> None:  # noqa: D103
    path, threads, xpath = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    x = torch.from_numpy(np.load(xpath))
    saved = os.dup(2)
    with open(os.devnull, "w") as null:  # the C++ runtime logs its start-up to stderr
        os.dup2(null.fileno(), 2)
        from executorch.extension.pybindings import _portable_lib as pl

        pl._unsafe_reset_threadpool(threads)
    os.dup2(saved, 2)
    baseline = peak_rss_mb()
    method = pl._load_program(path).load_method("forward")
    for _ in range(20):
        method.call([x])
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline,
                      "torch_imported": "torch" in sys.modules}))


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which (unlike ru_maxrss) restarts at exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


if __name__ == "__main__":
    main()
