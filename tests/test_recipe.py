import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from tests.conftest import cli, contract_ok, run_cli

from edgepress.checkpoint import atomic_dir, load_run, new_meta, save_model
from edgepress.errors import InputError
from edgepress.jsonconfig import JsonConfig
from edgepress.recipe import (
    check_order,
    compress,
    get_step,
    input_state,
    load_recipe,
    parse_recipe,
    register_step,
    step_names,
)
from edgepress.recipe.order import State
from edgepress.steps.registry import STEPS

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TORCH = State("torch", "mlp", "the input run 'mlp'")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits):
    """A briefly trained mlp run (weights + model.json; no metrics, so no input row)."""
    from edgepress.training import default_recipe, fit, seed_everything
    from edgepress.zoo import create_model

    seed_everything(0)
    model = create_model("mlp", input_shape=digits.input_shape, num_classes=10)
    fit(model, digits, default_recipe("mlp", epochs=3, batch_size=32), progress=False)
    meta = new_meta(zoo="mlp", kwargs={}, input_shape=digits.input_shape, num_classes=10,
                    data="digits", splits=digits.splits_record(), seed=0)
    out = tmp_path_factory.mktemp("recipe") / "mlp"
    with atomic_dir(out) as tmp:
        save_model(tmp, model, meta)
    return out




def _recipe(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- validation, before anything runs --------------------------------------------------------

def test_recipe_typo_fails_naming_the_line(run, tmp_path):
    path = _recipe(tmp_path, "# comment\n- step: prune\n  method: magnitude\n  sparsty: 0.9\n")
    p = cli("compress", run, "--recipe", path, "--out", tmp_path / "out")
    assert p.returncode == 2
    assert p.stderr.startswith("edgepress: error:") and p.stderr.count("\n") == 1
    assert f"{path} line 4" in p.stderr and "'sparsty'" in p.stderr
    assert "did you mean 'sparsity'" in p.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, line, message", [
    ("- step: prnue\n", 1, "unknown step 'prnue' (did you mean 'prune'?)"),
    ("- step: prune\n  method: magnitude\n  sparsity: 1.5\n", 3, "--sparsity must be in [0, 1)"),
    ("- step: prune\n  method: magnitude\n  sparsity: high\n", 3, "sparsity must be a number"),
    ("- step: prune\n  method: magnitude\n  sparsity: 0.5\n  channel-ratio: 0.5\n", 4,
     "--channel-ratio does not fit --method magnitude"),
    ("- step: prune\n  method: magnitude\n  sparsity: 0.5\n  finetune_epochs: 1.5\n", 4,
     "finetune_epochs must be an integer"),
    ("- step: quantize\n  mode: static\n  bits: 4\n", 3, "--mode static is int8 only"),
    ("- step: quantize\n  mode: fast\n", 2, "unknown --mode 'fast'"),
    ("- step: quantize\n  mode: static\n  mode: dynamic\n", 3, "given twice"),
    ("- step: distill\n  temperature: 2\n", 1, "needs 'student:"),
    ("- step: distill\n  student: resnet\n", 1, "unknown model 'resnet'"),
    ("- quantize\n", 1, "must be a mapping"),
    ("- mode: static\n", 1, "has no 'step:' key"),
    ("step: quantize\n", 1, "a recipe is a non-empty YAML list"),
    ("- step: prune\n  method: [magnitude\n", 3, "not valid YAML"),
])
def test_bad_recipes_name_file_and_line(text, line, message):
    with pytest.raises(InputError) as e:
        check_order(parse_recipe(text, "r.yaml"), TORCH)
    assert f"r.yaml line {line}:" in str(e.value)
    assert message in str(e.value)


def test_yaml_base60_trap_is_read_as_written():
    # YAML 1.1 reads an unquoted 2:4 as the number 124; a text option takes the text
    r = parse_recipe("- step: prune\n  method: nm\n  nm: 2:4\n")
    assert r.steps[0].config.nm_pattern == (2, 4)


def test_pytorch_step_after_onnx_only_quantization_fails_with_order_hint(run, tmp_path, capsys):
    path = _recipe(tmp_path, "- step: quantize\n  mode: static\n"
                             "- step: prune\n  method: magnitude\n  sparsity: 0.5\n")
    code, _, err = run_cli(capsys, "compress", run, "--recipe", path, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1
    assert f"{path} line 3" in err and "put quantize last" in err
    assert not (tmp_path / "out").exists()


def test_order_rules():
    q_then_q = parse_recipe("- step: quantize\n  mode: dynamic\n- step: quantize\n  mode: static\n")
    with pytest.raises(InputError, match="keep one quantize step, and put it last"):
        check_order(q_then_q, TORCH)
    qat = parse_recipe("- step: quantize\n  mode: qat\n")
    with pytest.raises(InputError, match="came from an ONNX file"):
        check_order(qat, State("onnx", None, "the input run 'x'"))
    static = parse_recipe("- step: quantize\n  mode: static\n")
    check_order(static, State("onnx", None, "the input run 'x'"))  # a plain ONNX model is fine
    with pytest.raises(InputError, match="already quantized: start from its fp32 parent"):
        check_order(static, State("quantized", "mlp", "the input run 'q'"))
    kd = parse_recipe("- step: distill\n  student: same:width=0.5\n- step: quantize\n")
    assert [s.zoo for s in check_order(kd, State("torch", "lenet5", "r"))] == ["lenet5", "lenet5"]


def test_shipped_recipes_validate():
    names = {p.name for p in RECIPES.glob("*.yaml")}
    assert {"int8.yaml", "prune-then-int8.yaml", "deep-compression.yaml",
            "distill-then-int8.yaml", "sparse-90.yaml"} <= names
    for name in sorted(names):
        if name == "deep-compression.yaml" and get_step("structure").unavailable:
            lines = (RECIPES / name).read_text().splitlines()
            line = lines.index("- step: structure") + 1
            with pytest.raises(InputError, match=f"line {line}: step 'structure' is not avail"):
                load_recipe(RECIPES / name)
            continue
        recipe = load_recipe(RECIPES / name)
        states = check_order(recipe, TORCH)
        assert states[-1].kind in ("torch", "quantized")
        for step in recipe.steps:  # every resolved config round-trips
            assert step.kind.parse(step.config.to_dict()).to_dict() == step.config.to_dict()


def test_a_step_registers_with_one_line(run, tmp_path):
    @dataclasses.dataclass
    class ToyConfig(JsonConfig):
        level: int = 1

    def apply_toy(model, config, ctx):  # scale the last layer's bias: a real, measured change
        from edgepress.steps import StepResult

        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.bias.mul_(config.level)
        return StepResult(model=model, config=config.to_dict(), sections={"toy": config.level})

    try:
        register_step("toy", ToyConfig, apply_toy)
        recipe = parse_recipe("- step: toy\n  level: 3\n")
        assert recipe.steps[0].config == ToyConfig(level=3)
        summary = compress(run, recipe, out=tmp_path / "toy", progress=False)
        meta = json.loads((tmp_path / "toy" / "steps" / "01-toy" / "model.json").read_text())
        assert meta["toy"] == 3 and meta["provenance"]["config"] == {"level": 3}
        assert meta["provenance"]["parent"] == str(run.resolve())
        row = summary["steps"][0]
        assert row["step"] == "toy" and row["params_total"] > 0
        assert 0.0 <= row["accuracy"] <= 1.0 and row["latency_ms"]["median"] > 0
        with pytest.raises(InputError, match="line 2: step toy: level must be an integer"):
            parse_recipe("- step: toy\n  level: high\n")
    finally:
        STEPS.pop("toy", None)
    assert "toy" not in step_names()
    if importlib.util.find_spec("edgepress.structure") is not None:
        assert get_step("structure").unavailable is None


# --- running recipes -------------------------------------------------------------------------

def _row_ok(row, out=None):
    """A step's summary row holds real figures: the run's own measured record, when given."""
    assert 0 < row["params_nonzero"] <= row["params_total"] and row["macs"] > 0
    assert 0 < row["size_gzip_bytes"] < row["size_bytes"]
    assert 0.0 <= row["accuracy"] <= 1.0 and row["latency_ms"]["median"] > 0
    if out is not None:
        rec = json.loads((Path(out) / "metrics.json").read_text())
        for key in ("params_total", "params_nonzero", "macs", "size_bytes", "size_gzip_bytes",
                    "accuracy"):
            assert row[key] == rec[key], key


def test_int8_recipe_makes_a_complete_out(run, tmp_path):
    out = tmp_path / "int8"
    p = cli("compress", run, "--recipe", RECIPES / "int8.yaml", "--out", out, "--no-progress")
    assert p.returncode == 0, p.stderr
    summary = json.loads((out / "compress.json").read_text())
    assert [r["step"] for r in summary["steps"]] == ["quantize"]
    _row_ok(summary["steps"][0], out)
    assert summary["input"]["measured"] is False  # the input run has no metrics.json
    ok, msg = contract_ok(out, out / "steps" / "01-quantize")
    assert ok, msg
    meta = load_run(out).meta
    assert meta["deployment"]["precision"] == "int8"
    assert meta["provenance"]["parent"] == str(run.resolve())
    record = json.loads((out / "metrics.json").read_text())
    assert record["fidelity"]["parent"] == str(run.resolve())
    assert record["kernels"].get("QLinearMatMul", 0) + record["kernels"].get("MatMulInteger", 0) \
        + record["kernels"].get("QGemm", 0) > 0


def test_prune_then_quantize_recipe_measures_each_step_and_resumes(run, tmp_path):
    text = ("- step: prune\n  method: magnitude\n  sparsity: 0.8\n  scope: global\n"
            "  finetune_epochs: 1\n- step: quantize\n  mode: dynamic\n")
    out = tmp_path / "pq"
    s = compress(run, _recipe(tmp_path, text), out=out, progress=False)
    pruned, quantized = s["steps"]
    _row_ok(pruned)
    assert pruned["params_nonzero"] < 0.25 * pruned["params_total"]
    assert quantized["size_bytes"] < 0.4 * pruned["size_bytes"]  # int8 weights
    assert s["final"]["size_bytes"] == quantized["size_bytes"]
    assert not any(r["reused"] for r in s["steps"])
    assert json.loads((out / "compress.json").read_text())["steps"][1]["step"] == "quantize"
    ok, msg = contract_ok(out, out / "steps" / "01-prune", out / "steps" / "02-quantize")
    assert ok, msg
    assert (out / "quantize.json").is_file() and not (out / "step.json").exists()

    again = compress(run, _recipe(tmp_path, text), out=out, progress=False)
    assert [r["reused"] for r in again["steps"]] == [True, True]
    assert again["final"] == s["final"]  # OUT was already this recipe's run: not re-measured
    changed = compress(run, _recipe(tmp_path, text.replace("dynamic", "static")), out=out,
                       progress=False)
    assert [r["reused"] for r in changed["steps"]] == [True, False]
    assert load_run(out).meta["deployment"]["quantization"]["mode"] == "static"


def test_output_dir_that_is_a_file_exits_2(run, tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("not a directory")
    code, _, err = run_cli(capsys, "compress", run, "--recipe", RECIPES / "int8.yaml", "--out",
                           target)
    assert code == 2 and "is not a directory" in err
    assert target.read_text() == "not a directory"
    code, _, err = run_cli(capsys, "compress", run, "--recipe", RECIPES / "int8.yaml", "--out",
                           run)
    assert code == 2 and "would overwrite the input run" in err


def test_dry_run_prints_the_plan(run, tmp_path, capsys):
    code, out, err = run_cli(capsys, "compress", run, "--recipe",
                             RECIPES / "prune-then-int8.yaml", "--out", tmp_path / "o",
                             "--dry-run")
    assert code == 0, err
    assert "1. prune channel" in out and "2. quantize static" in out
    assert not (tmp_path / "o").exists()
    assert input_state(load_run(run)).kind == "torch"
