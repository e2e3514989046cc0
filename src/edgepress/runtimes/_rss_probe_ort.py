"""Peak-RSS probe: run as a script in a fresh interpreter; imports only numpy and onnxruntime.

The RSS after the imports (and the input batch), before the model is loaded, is reported too, so
the model's own cost (peak − baseline) can be told apart from the interpreter's and the runtime's.

Usage: python _rss_probe_ort.py MODEL.onnx THREADS X.npy
    -> prints {"peak_rss_mb": ..., "baseline_rss_mb": ..., "torch_imported": false}
"""

import json
import resource
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:  # noqa: D103
    path, threads, xpath = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    x = np.load(xpath)
    baseline = peak_rss_mb()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for _ in range(20):
        sess.run(None, {name: x})
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline,
                      "torch_imported": "torch" in sys.modules}))


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which (unlike ru_maxrss) restarts at exec, so the
    parent's memory before the fork is not counted.
    """
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
