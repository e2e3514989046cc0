import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgepress.data import load_data

# Tests check what is measured, not how fast: a quarter second of timed runs per model (the
# default is 2 s) keeps the suite short; CLI subprocesses inherit it.
os.environ.setdefault("EDGEPRESS_LATENCY_SECONDS", "0.25")

# shared/ lies beside the clone (CI) or at /work/shared (a developer's clone elsewhere)
_CANDIDATES = [Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")]
SHARED = next((p for p in _CANDIDATES if (p / "tools" / "check_contract.py").is_file()),
              _CANDIDATES[0])
CHECKER = SHARED / "tools" / "check_contract.py"


def cli(*args, check=None):
    """Run the real CLI in a fresh process; return the CompletedProcess."""
    proc = subprocess.run([sys.executable, "-m", "edgepress", *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one thread avoids OpenMP contention stalls (set
    per test: the session's ``train`` fixtures reset it to every core). A module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(capsys, *args):
    """The CLI entry point in-process (cheaper than a fresh interpreter): (code, out, err)."""
    from edgepress.cli.main import main as cli_main

    try:
        code = cli_main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="session")
def digits():
    return load_data("digits")


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory):
    """A trained mlp run on digits, made through the library."""
    from edgepress import train

    out = tmp_path_factory.mktemp("runs") / "mlp"
    train("mlp", data="digits", out=out, epochs=5, batch_size=32, progress=False)
    return out


@pytest.fixture(scope="session")
def foreign_onnx(tmp_path_factory):
    """A hand-built ONNX classifier: input 'pixels', batch fixed at 1, flattened, opset 13."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.1, (64, 10)).astype(np.float32)
    b = np.zeros(10, np.float32)
    shape = numpy_helper.from_array(np.array([1, 64], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["pixels", "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "W"], ["mm"]),
         helper.make_node("Add", ["mm", "B"], ["scores"])],
        "foreign",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"), shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("foreign") / "foreign.onnx"
    onnx.save(model, str(path))
    return path


def grayscale_models() -> list[str]:
    """The zoo models that take a one-channel image (efficientnet-lite0 takes RGB only: its
    tests are in tests/test_efficientnet.py)."""
    from edgepress.errors import InputError
    from edgepress.zoo import create_model, list_models

    names = []
    for name in list_models():
        try:
            create_model(name, input_shape=(1, 8, 8), num_classes=10)
        except InputError:
            continue
        names.append(name)
    return names


def contract_ok(*paths):
    proc = subprocess.run([sys.executable, str(CHECKER), *map(str, paths)], capture_output=True,
                          text=True)
    return proc.returncode == 0, proc.stdout + proc.stderr
