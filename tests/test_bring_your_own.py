"""Your own model (FILE.py:FACTORY, --weights, edgepress import) and your own images
(imagefolder:DIR), through the real CLI; and the one output guard of every producing command."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import contract_ok, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ASSET = Path(__file__).parent / "assets" / "user_net.py"


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    f = d / "user_net.py"
    shutil.copy(ASSET, f)
    return f


@pytest.fixture(scope="module")
def user_run(user_file, tmp_path_factory):
    from edgepress import train

    out = tmp_path_factory.mktemp("runs") / "mine"
    train(f"{user_file}:build:width=8", data="digits", out=out, epochs=10, lr=1e-2,
          progress=False)
    return out


def test_a_user_model_trains_and_records_its_source(user_run, user_file):
    import hashlib

    meta = json.loads((user_run / "model.json").read_text())
    arch = meta["architecture"]
    assert arch["zoo"] == f"{user_file.resolve()}:build" and arch["kwargs"] == {"width": 8}
    assert arch["source"]["sha256"] == hashlib.sha256(user_file.read_bytes()).hexdigest()
    rec = json.loads((user_run / "metrics.json").read_text())
    assert rec["model"] == "user_net.py:build:width=8" and rec["accuracy"] > 0.6
    ok, out = contract_ok(user_run)
    assert ok, out


def test_a_user_model_goes_through_prune_quantize_and_structure(user_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "prune", user_run, "--out", tmp_path / "half", "--method",
                           "channel", "--channel-ratio", "0.5", "--finetune-epochs", "1",
                           "--finetune-teacher", "parent")
    assert code == 0, err
    parent = json.loads((user_run / "metrics.json").read_text())
    half = json.loads((tmp_path / "half" / "metrics.json").read_text())
    assert half["params_total"] < 0.5 * parent["params_total"]  # residual + SE groups shrank
    assert half["macs"] < 0.5 * parent["macs"]
    cfg = json.loads((tmp_path / "half" / "model.json").read_text())["provenance"]["config"]
    assert cfg["finetune"]["teacher"] == "parent"
    code, _, err = run_cli(capsys, "quantize", tmp_path / "half", "--out", tmp_path / "q",
                           "--mode", "static", "--calibration", "64")
    assert code == 0, err
    q = json.loads((tmp_path / "q" / "metrics.json").read_text())
    assert any(k.startswith("QLinear") for k in q["kernels"])
    code, _, err = run_cli(capsys, "structure", user_run, "--out", tmp_path / "fold",
                           "--method", "fold")
    assert code == 0, err
    ok, out = contract_ok(tmp_path / "half", tmp_path / "q", tmp_path / "fold")
    assert ok, out


def test_import_measures_pretrained_weights_without_training(user_file, tmp_path, capsys):
    from safetensors.torch import save_file

    from edgepress.checkpoint import load_run
    from edgepress.zoo import create_model

    torch.manual_seed(3)
    net = create_model(f"{user_file}:build:width=4", input_shape=(1, 8, 8), num_classes=10)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "w.st")
    code, _, err = run_cli(capsys, "import", "--model", f"{user_file}:build:width=4",
                           "--weights", tmp_path / "w.st", "--data", "digits",
                           "--out", tmp_path / "imp")
    assert code == 0, err
    back = load_run(tmp_path / "imp").build_model()
    for k, v in net.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    meta = json.loads((tmp_path / "imp" / "model.json").read_text())
    assert meta["training"] is None and meta["provenance"]["weights"]["sha256"]
    torch.save(net.state_dict(), tmp_path / "w.pt")  # a plain state dict: weights_only loads it
    code, _, err = run_cli(capsys, "import", "--model", f"{user_file}:build:width=4",
                           "--weights", tmp_path / "w.pt", "--data", "digits",
                           "--out", tmp_path / "imp2")
    assert code == 0, err


def _bad(capsys, *args):
    code, out, err = run_cli(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("edgepress: error:"), err
    assert "Traceback" not in err
    return lines[0]


def test_bad_user_models_are_one_line_errors(user_file, tmp_path, capsys):
    out = tmp_path / "x"
    (tmp_path / "raises.py").write_text("def build(**kw):\n    raise ValueError('no way')\n")
    (tmp_path / "notmodule.py").write_text("def build(**kw):\n    return 42\n")
    cases = {
        "does not exist": f"{tmp_path}/missing.py:build",
        "does not define 'nope'": f"{user_file}:nope",
        "raised ValueError: no way": f"{tmp_path}/raises.py:build",
        "returned int, not a torch.nn.Module": f"{tmp_path}/notmodule.py:build",
    }
    for want, spec in cases.items():
        assert want in _bad(capsys, "import", "--model", spec, "--data", "digits", "--out", out)
    assert not out.exists()


class _Pickled:
    """An object only pickle can restore (what weights_only=True refuses)."""


def test_weights_that_do_not_fit_or_need_pickle(user_file, tmp_path, capsys):
    from safetensors.torch import save_file

    from edgepress.zoo import create_model

    spec = f"{user_file}:build:width=4"
    wide = create_model(f"{user_file}:build:width=8", input_shape=(1, 8, 8), num_classes=10)
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, tmp_path / "wide.st")
    msg = _bad(capsys, "import", "--model", spec, "--weights", tmp_path / "wide.st",
               "--data", "digits", "--out", tmp_path / "o")
    assert "does not fit the model" in msg and "in the file" in msg
    state = create_model(spec, input_shape=(1, 8, 8), num_classes=10).state_dict()
    save_file({k: v.contiguous() for k, v in list(state.items())[:-2]}, tmp_path / "part.st")
    msg = _bad(capsys, "import", "--model", spec, "--weights", tmp_path / "part.st",
               "--data", "digits", "--out", tmp_path / "o")
    assert "2 missing" in msg
    torch.save({"state": wide.state_dict(), "note": _Pickled()}, tmp_path / "whole.pt")
    msg = _bad(capsys, "import", "--model", spec, "--weights", tmp_path / "whole.pt",
               "--data", "digits", "--out", tmp_path / "o")
    assert "without pickle" in msg
    assert not (tmp_path / "o").exists()


def test_an_input_the_model_rejects_is_named(tmp_path, capsys):
    (tmp_path / "fixed.py").write_text(
        "import torch\n"
        "def build(num_classes):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, num_classes))\n")
    msg = _bad(capsys, "import", "--model", f"{tmp_path}/fixed.py:build", "--data", "digits",
               "--out", tmp_path / "o")
    assert "rejects input of shape [2, 1, 8, 8]" in msg


def test_a_changed_source_file_is_refused(user_file, tmp_path, capsys):
    src = tmp_path / "net.py"
    shutil.copy(user_file, src)
    code, _, err = run_cli(capsys, "import", "--model", f"{src}:build:width=4", "--data",
                           "digits", "--out", tmp_path / "r")
    assert code == 0, err
    src.write_text(src.read_text() + "\n# edited\n")
    msg = _bad(capsys, "prune", tmp_path / "r", "--out", tmp_path / "p", "--method",
               "magnitude", "--sparsity", "0.5", "--finetune-epochs", "0")
    assert "changed since the run was made" in msg


def _write_folder(root: Path, n_per_class: int = 12, rgb: bool = True) -> Path:
    from PIL import Image

    from edgepress.data import load_data

    ds = load_data("digits")
    for split, (x, y) in (("train", (ds.x_train, ds.y_train)), ("test", (ds.x_test, ds.y_test))):
        for c in range(3):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(x[y == c][:n_per_class]):
                a = (img[0] * 255).astype(np.uint8)
                im = Image.fromarray(np.stack([a, a // 2, 255 - a], -1) if rgb else a)
                im.save(d / f"{i:03d}.png")
    return root


def test_an_image_folder_trains_a_model(tmp_path, capsys):
    from edgepress.data import load_data

    root = _write_folder(tmp_path / "imgs")
    ds = load_data(f"imagefolder:{root}@12x12")
    assert ds.x_train.shape[1:] == (3, 12, 12) and ds.classes == ("class0", "class1", "class2")
    assert len(ds.y_val) == 3 * 2 and len(ds.y_train) == 3 * 10  # 10% (ceil) of each class
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    again = load_data(f"imagefolder:{root}@12x12")
    assert again.index_hashes == ds.index_hashes  # deterministic
    code, _, err = run_cli(capsys, "train", "--model", "lenet5:width=0.5", "--data",
                           f"imagefolder:{root}", "--input-size", "12x12", "--epochs", "2",
                           "--no-progress", "--out", tmp_path / "run")
    assert code == 0, err
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["classes"] == ["class0", "class1", "class2"]
    assert meta["architecture"]["input_shape"] == [3, 12, 12]
    assert meta["data"].endswith("@12x12") and meta["splits"]["val"]["size"] == 6


def test_an_image_folder_larger_than_memory_streams_and_trains_the_same(tmp_path, monkeypatch):
    """Over the memory budget the train split stays on disk and a DataLoader with workers
    decodes it: the same batches in the same order, so the same weights as from memory."""
    import torch

    from edgepress.data import load_data
    from edgepress.imagefolder import LazyImages
    from edgepress.training import TrainConfig, fit, seed_everything
    from edgepress.zoo import create_model

    root = _write_folder(tmp_path / "imgs", n_per_class=20)
    spec = f"imagefolder:{root}@12x12"
    in_memory = load_data(spec)
    monkeypatch.setenv("EDGEPRESS_IMAGEFOLDER_MEMORY_MB", "0")
    monkeypatch.setenv("EDGEPRESS_LOADER_WORKERS", "2")
    streamed = load_data(spec)
    assert streamed.streamed and isinstance(streamed.x_train, LazyImages)
    assert not in_memory.streamed and streamed.input_shape == in_memory.input_shape
    assert np.array_equal(streamed.x_train[[3, 0, 7]], in_memory.x_train[[3, 0, 7]])
    assert streamed.subset(10).streamed and len(streamed.subset(10).y_train) == 10
    weights = []
    for ds in (in_memory, streamed):
        seed_everything(0)
        model = create_model("lenet5:width=0.5", input_shape=ds.input_shape, num_classes=3)
        fit(model, ds, TrainConfig(epochs=2, batch_size=8, seed=0), progress=False)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    monkeypatch.setenv("EDGEPRESS_IMAGEFOLDER_MEMORY_MB", "lots")
    with pytest.raises(Exception, match="must be a number of megabytes"):
        load_data(spec)


def test_bad_image_folders_are_one_line_errors(tmp_path, capsys):
    def bad(root, *extra):
        return _bad(capsys, "train", "--model", "mlp", "--data", f"imagefolder:{root}",
                    *extra, "--epochs", "1", "--out", tmp_path / "o")

    (tmp_path / "none" / "train").mkdir(parents=True)
    (tmp_path / "none" / "test").mkdir(parents=True)
    assert "no class folders" in bad(tmp_path / "none")
    root = _write_folder(tmp_path / "mismatch")
    shutil.rmtree(root / "test" / "class2")
    assert "differ from train" in bad(root)
    root = _write_folder(tmp_path / "empty")
    for f in (root / "test" / "class1").iterdir():
        f.unlink()
    assert "has no PNG or JPEG images" in bad(root)
    root = _write_folder(tmp_path / "corrupt")
    (root / "train" / "class0" / "000.png").write_bytes(b"not a png")
    assert "000.png" in bad(root, "--input-size", "8x8")
    assert "--input-size resizes an image folder" in _bad(
        capsys, "train", "--model", "mlp", "--data", "digits", "--input-size", "8x8",
        "--out", tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("verb", [
    ["quantize", "--mode", "static"], ["prune", "--method", "magnitude", "--sparsity", "0.5"],
    ["structure", "--method", "fold"], ["distill", "--student", "mlp:width=0.5"]])
def test_out_equal_to_the_input_is_refused_by_every_verb(mlp_run, tmp_path, capsys, verb):
    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    before = (run / "model.json").read_bytes()
    args = (["distill", "--teacher", run, *verb[1:]] if verb[0] == "distill"
            else [verb[0], run, *verb[1:]])
    msg = _bad(capsys, *args, "--out", run)
    assert "is the run being read" in msg
    assert (run / "model.json").read_bytes() == before


def test_study_on_your_own_model_and_images_lists_rows_that_do_not_apply(tmp_path, capsys):
    """A factory that takes no width: the half-width distilled student cannot be built, so that
    row (and the recipe that starts with it) is listed with its reason; the rest is measured."""
    root = _write_folder(tmp_path / "imgs", n_per_class=40)
    (tmp_path / "plain.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "def build(num_classes, input_shape):\n"
        "    c = input_shape[0]\n"
        "    return nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                         nn.Linear(16, num_classes))\n")
    out = tmp_path / "study"
    code, _, err = run_cli(capsys, "study", "--model", f"{tmp_path}/plain.py:build", "--data",
                           f"imagefolder:{root}", "--input-size", "10x10", "--quick",
                           "--runtimes", "onnxruntime", "--search-seconds", "0", "--out", out)
    assert code == 0, err
    meta = json.loads((out / "study-meta.json").read_text())
    assert set(meta["not_made"]) == {"distilled"} and "width" in meta["not_made"]["distilled"]
    variants = [r["variant"] for r in json.loads((out / "study.json").read_text())]
    assert variants == ["original", "pruned", "quantized", "structured", "combined",
                        "reference-again"]
    skipped = {c["recipe"]: c["not_made"] for c in meta["candidates"] if c["run"] is None}
    assert "width" in skipped.pop("distill-then-int8")
    assert all("quick study" in why for why in skipped.values())  # not tried, and said so
    assert {"int8", "prune-then-int8"} <= {c["recipe"] for c in meta["candidates"]
                                          if c["run"] is not None}
    assert "NOT MADE for this model" in (out / "report.html").read_text()
