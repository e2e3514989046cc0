"""The step abstraction: every technique is a registered config + ``apply`` that one runner
turns into a measured run; one fine-tune shape; typed, versioned records.
"""

import json
import shutil

import pytest
import torch
import yaml
from tests.conftest import run_cli

from edgepress.errors import InputError
from edgepress.finetune import Finetune, finetune_of, with_finetune
from edgepress.steps import StepResult, get_step, register_step, run_step, step_names
from edgepress.steps.registry import STEPS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# one valid config per step and family option that changes its shape
EXAMPLES = {
    "prune": [{"method": "magnitude", "sparsity": 0.5, "finetune_teacher": "parent"},
              {"method": "channel", "channel_ratio": 0.5, "finetune_epochs": 1}],
    "quantize": [{"mode": "static", "granularity": "tensor"},
                 {"mode": "qat", "epochs": 1, "finetune_teacher": "parent"}],
    "structure": [{"method": "lowrank", "energy": 0.8}, {"method": "fold"}],
    "distill": [{"student": "same:width=0.5", "temperature": 2.0}],
}


def test_every_registered_step_round_trips_through_json_and_yaml_with_a_version():
    assert set(step_names()) == set(EXAMPLES)
    for name, options in EXAMPLES.items():
        kind = get_step(name)
        for opts in options:
            config = kind.parse(opts)
            d = config.to_dict()
            assert d["version"] == 1
            assert kind.config.from_dict(json.loads(json.dumps(d))) == config
            assert kind.config.from_dict(yaml.safe_load(yaml.safe_dump(d))) == config
            with pytest.raises(InputError, match="newer than this edgepress"):
                kind.config.from_dict({**d, "version": 2})


def test_one_finetune_shape_for_every_family_that_trains():
    for name, opts, trains in [("prune", EXAMPLES["prune"][0], True),
                               ("quantize", EXAMPLES["quantize"][1], True),
                               ("structure", EXAMPLES["structure"][0], True),
                               ("quantize", EXAMPLES["quantize"][0], False),
                               ("structure", EXAMPLES["structure"][1], False)]:
        config = get_step(name).parse(opts)
        ft = finetune_of(config)
        assert (ft is not None) == trains, (name, opts)
        if ft is None:
            assert with_finetune(config, Finetune(epochs=9)) is config
            continue
        new = with_finetune(config, Finetune(epochs=3, lr=1e-3, train_subset=100,
                                             teacher="parent", alpha=0.5, temperature=2.0))
        got = finetune_of(new)
        assert (got.epochs, got.lr, got.train_subset, got.teacher, got.alpha,
                got.temperature) == (3, 1e-3, 100, "parent", 0.5, 2.0), name
        assert type(new) is type(config)
    with pytest.raises(InputError, match="fine-tune alpha"):
        Finetune(teacher="parent", alpha=1.5)


def test_the_runner_writes_nothing_when_a_step_fails(mlp_run, tmp_path):
    """A step that raises half-way leaves no output and no temp folder behind."""
    from edgepress.jsonconfig import JsonConfig

    class Boom(JsonConfig):
        def __init__(self, **kw):
            pass

        def to_dict(self):
            return {}

    def apply_boom(model, config, ctx):
        assert ctx.work is not None and ctx.work.is_dir() and ctx.parent is not None
        raise InputError("boom: this model cannot be compressed this way")

    register_step("boom", Boom, apply_boom)
    try:
        with pytest.raises(InputError, match="boom"):
            run_step("boom", mlp_run, Boom(), out=tmp_path / "out", progress=False)
    finally:
        STEPS.pop("boom", None)
    assert list(tmp_path.iterdir()) == []


def test_a_step_result_child_is_written_and_measured_inside_the_run(mlp_run, tmp_path):
    """What distillation's baseline twin relies on: children are complete runs too."""
    from edgepress.jsonconfig import JsonConfig

    class Same(JsonConfig):
        def to_dict(self):
            return {"same": True}

    def apply_same(model, config, ctx):
        child = StepResult(model=model, config={"child": True})
        return StepResult(model=model, config=config.to_dict(), children={"twin": child},
                          sections={"note": "unchanged"})

    register_step("same", Same, apply_same)
    try:
        done = run_step("same", mlp_run, Same(), out=tmp_path / "same", progress=False)
    finally:
        STEPS.pop("same", None)
    parent = json.loads((mlp_run / "metrics.json").read_text())
    child = json.loads((tmp_path / "same" / "twin" / "metrics.json").read_text())
    meta = json.loads((tmp_path / "same" / "model.json").read_text())
    assert meta["note"] == "unchanged" and meta["provenance"]["parent"] == str(mlp_run.resolve())
    assert child["accuracy"] == done.record["accuracy"]  # the same weights: the same predictions
    assert done.record["fidelity"]["top1_agreement"] == 1.0  # against the parent, which it is
    assert done.record["accuracy"] == parent["accuracy"]


def test_qat_is_recovered_by_distillation_from_its_parent(mlp_run, tmp_path, capsys):
    """``--finetune-teacher parent`` reaches QAT: the same seed with and without a teacher gives
    different fine-tuned weights, and the config records the teacher."""
    outs = {}
    for teacher in ("none", "parent"):
        out = tmp_path / f"qat-{teacher}"
        code, _, err = run_cli(capsys, "quantize", mlp_run, "--mode", "qat", "--epochs", "1",
                               "--train-subset", "400", "--finetune-teacher", teacher,
                               "--out", out, "--no-progress")
        assert code == 0, err
        outs[teacher] = out
        q = json.loads((out / "model.json").read_text())["deployment"]["quantization"]
        assert q["teacher"] == teacher and q["train_subset"] == 400 and q["version"] == 1
    from safetensors.torch import load_file

    a = load_file(str(outs["none"] / "model.safetensors"))
    b = load_file(str(outs["parent"] / "model.safetensors"))
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_typed_records_read_back_what_was_written_and_refuse_what_is_not(mlp_run, tmp_path,
                                                                        capsys):
    from edgepress.records import MeasurementRecord, RunMeta, read_record

    meta = json.loads((mlp_run / "model.json").read_text())
    assert RunMeta.from_dict(meta).to_dict() == meta
    done = tmp_path / "measured"
    shutil.copytree(mlp_run, done)
    code, _, err = run_cli(capsys, "measure", done, "--json", done / "metrics.json")
    assert code == 0, err
    written = json.loads((done / "metrics.json").read_text())
    assert read_record(done / "metrics.json") == written
    assert MeasurementRecord.from_dict(written).params_total == written["params_total"]

    broken = tmp_path / "broken"
    shutil.copytree(mlp_run, broken)
    (broken / "model.json").write_text(json.dumps({**meta, "schema": 99}))
    code, out, err = run_cli(capsys, "measure", broken)
    assert code == 2 and "schema 99 is newer" in err and len(err.strip().splitlines()) == 1
    (broken / "model.json").write_text(json.dumps({k: v for k, v in meta.items()
                                                   if k != "architecture"}))
    code, out, err = run_cli(capsys, "measure", broken)
    assert code == 2 and "missing 'architecture'" in err
    with pytest.raises(InputError, match="'latency_ms' must be dict"):
        MeasurementRecord.from_dict({**written, "latency_ms": 3.0})
