"""The reliability table: every kind of bad input, hostile file and interruption tried against
edgepress, one parametrised row each. A row holds when the command prints exactly one
``edgepress: error:`` line, exits 2 (130 for an interruption), and leaves nothing behind: no
output, no temp folder, no changed input.

The table in the README ("What edgepress guarantees") is this file's summary.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- hostile and broken files ---------------------------------------------------------------------

def _onnx(path: Path, shape, op="Relu", domain="") -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"], domain=domain)], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=opsets), path)
    return path


def _external_outside(tmp: Path) -> Path:
    """An ONNX whose weight lives in external data at ``../secret.bin``."""
    import onnx
    from onnx import TensorProto, helper

    folder = tmp / "model"
    folder.mkdir()
    (tmp / "secret.bin").write_bytes(np.ones(64, np.float32).tobytes())
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 64])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "256")):
        w.external_data.add(key=k, value=v)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w])
    path = folder / "model.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path,
              save_as_external_data=False)
    return path


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _nan_run(src: Path, dst: Path) -> Path:
    from safetensors.numpy import load_file, save_file

    d = _copy_run(src, dst)
    state = load_file(d / "model.safetensors")
    name = next(iter(state))
    state[name] = state[name].copy()
    state[name].flat[0] = np.nan
    save_file(state, d / "model.safetensors")
    return d


def _other_weights(src: Path, dst: Path, tmp: Path) -> Path:
    from edgepress import train

    d = _copy_run(src, dst)
    other = tmp / "wide"
    train("mlp:width=2", data="digits", out=other, epochs=1, progress=False, timed=False)
    shutil.copyfile(other / "model.safetensors", d / "model.safetensors")
    return d


def _archive(run: Path, tmp: Path) -> Path:
    from edgepress.pack import pack

    out = tmp / "good.epz"
    pack(run, out=out)
    return out


def _crafted_archive(run: Path, tmp: Path, edit) -> Path:
    """An archive whose manifest ``edit`` changed, its checksum recomputed (a hostile file, not
    a damaged one: the checksum alone does not stop it)."""
    import hashlib
    import json as _json

    from edgepress.pack.archive import _HEAD, HEADER_BYTES
    from edgepress.pack.coders import lzma_compress, lzma_decompress

    blob = _archive(run, tmp).read_bytes()
    magic, version, m_len, p_len, _ = _HEAD.unpack_from(blob)
    manifest = _json.loads(lzma_decompress(blob[HEADER_BYTES:HEADER_BYTES + m_len]))
    edit(manifest)
    m = lzma_compress(_json.dumps(manifest).encode())
    payload = blob[HEADER_BYTES + m_len:]
    body = m + payload
    head = _HEAD.pack(magic, version, len(m), len(payload), hashlib.sha256(body).digest())
    out = tmp / "crafted.epz"
    out.write_bytes(head + body)
    return out


def _bomb_archive(tmp: Path) -> Path:
    """A valid-checksum archive whose manifest is an LZMA stream of 32 MiB of zeros (the test
    lowers the decode limit to 1 MiB, standing for the real 1 GiB)."""
    import hashlib
    import lzma

    from edgepress.pack.archive import _HEAD, FORMAT_VERSION, MAGIC
    from edgepress.pack.coders import FILTERS

    c = lzma.LZMACompressor(format=lzma.FORMAT_RAW, filters=FILTERS)
    chunk = b"\0" * (1 << 24)
    m = b"".join(c.compress(chunk) for _ in range(2)) + c.flush()
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, len(m), 0, hashlib.sha256(m).digest())
    out = tmp / "bomb.epz"
    out.write_bytes(head + m)
    return out


def _recipe(tmp: Path, text: str) -> Path:
    p = tmp / "r.yaml"
    p.write_text(text)
    return p


ALIAS_BOMB = ("- step: prune\n  method: magnitude\n  sparsity: 0.5\n"
              "  skip_layers: &a0 [x, x, x, x]\n") + "".join(
    f"- step: prune\n  skip_layers: &a{i + 1} [{', '.join([f'*a{i}'] * 6)}]\n"
    for i in range(12))  # 4·6¹² strings once expanded


def _pickled_npz(tmp: Path) -> Path:
    p = tmp / "pickled.npz"
    objs = np.empty(3, dtype=object)
    objs[:] = [{"a": 1}, [2], "three"]
    np.savez(p, x_train=objs, y_train=np.zeros(3))
    return p


# Each row: id → (setup(tmp, run) → (argv, env), a phrase the error line must hold).
# ``OUT`` in argv is the output that must not appear.
CASES = {
    "truncated onnx": (lambda t, r: (["measure", _trunc(t, r), "--data", "digits"], {}),
                       "not a valid ONNX"),
    "random bytes as onnx": (lambda t, r: (["measure", _random(t), "--data", "digits"], {}),
                             "not a valid ONNX"),
    "shape mismatch": (lambda t, r: (["measure", _onnx(t / "rgb.onnx", [1, 3, 32, 32]),
                                      "--data", "digits"], {}), "expects input"),
    "NaN weights": (lambda t, r: (["quantize", _nan_run(r, t / "nan"), "--mode", "static",
                                   "--out", "OUT"], {}), "NaN/inf"),
    "impossible channel ratio": (lambda t, r: (["prune", r, "--method", "channel",
                                                "--channel-ratio", "1.5", "--out", "OUT"], {}),
                                 "ratio"),
    "impossible sparsity": (lambda t, r: (["prune", r, "--method", "magnitude", "--sparsity",
                                           "1.2", "--out", "OUT"], {}), "sparsity"),
    "recipe typo": (lambda t, r: (["compress", r, "--recipe", _recipe(
        t, "- step: prune\n  method: magnitude\n  sparsty: 0.5\n"), "--out", "OUT"], {}),
        "did you mean 'sparsity'"),
    "unknown recipe step": (lambda t, r: (["compress", r, "--recipe", _recipe(
        t, "- step: prnue\n"), "--out", "OUT"], {}), "unknown step"),
    "non-YAML recipe": (lambda t, r: (["compress", r, "--recipe", _recipe(t, "- [unclosed\n"),
                                       "--out", "OUT"], {}), "YAML"),
    "YAML alias bomb": (lambda t, r: (["compress", r, "--recipe", _recipe(t, ALIAS_BOMB),
                                       "--out", "OUT"], {}), "alias"),
    "npz with pickled objects": (lambda t, r: (["train", "--model", "mlp", "--data",
                                                f"npz:{_pickled_npz(t)}", "--out", "OUT"], {}),
                                 "pickle"),
    "missing weights": (lambda t, r: (["prune", _no_weights(r, t), "--method", "channel",
                                       "--channel-ratio", "0.5", "--out", "OUT"], {}),
                        "weights"),
    "mismatched weights": (lambda t, r: (["prune", _other_weights(r, t / "mis", t), "--method",
                                          "channel", "--channel-ratio", "0.5", "--out", "OUT"],
                                         {}), "does not fit"),
    "malformed model.json": (lambda t, r: (["measure", _bad_json(r, t)], {}), "model.json"),
    "model.json without input shape": (lambda t, r: (["measure", _no_shape(r, t)], {}),
                                       "input_shape"),
    "flipped byte in archive": (lambda t, r: (["unpack", _flipped(_archive(r, t)), "--out",
                                               "OUT"], {}), "checksum"),
    "archive header claims more": (lambda t, r: (["unpack", _cut(_archive(r, t)), "--out",
                                                  "OUT"], {}), "truncated"),
    "archive manifest claims more": (lambda t, r: (["unpack", _crafted_archive(
        r, t, _more_bytes), "--out", "OUT"], {}), "payload holds"),
    "archive declares too many values": (lambda t, r: (["unpack", _crafted_archive(
        r, t, _huge_shape), "--out", "OUT"], {}), "more than edgepress unpacks"),
    "onnx external data outside its folder": (lambda t, r: (["measure", _external_outside(t),
                                                             "--data", "digits"], {}),
                                              "not a valid ONNX"),
    "absurd onnx input": (lambda t, r: (["measure", _onnx(t / "huge.onnx",
                                                          [1, 1, 100000, 100000]),
                                         "--data", "digits"], {}), "more than edgepress feeds"),
    "operator no runtime has": (lambda t, r: (["measure", _onnx(t / "op.onnx", [1, 1, 8, 8],
                                                                "Frobnicate", "com.nowhere"),
                                               "--data", "digits"], {}), "cannot load"),
    "missing run": (lambda t, r: (["measure", t / "nope"], {}), "does not exist"),
    "unknown model": (lambda t, r: (["train", "--model", "vgg99", "--data", "digits", "--out",
                                     "OUT"], {}), "unknown model"),
    "bad data sample spec": (lambda t, r: (["measure", r, "--data", "digits[test=-1]"], {}),
                             "positive numbers"),
    "empty calibration set": (lambda t, r: (["quantize", r, "--mode", "static",
                                             "--calibration", "0", "--out", "OUT"], {}),
                              "empty"),
    "calibration larger than the split": (lambda t, r: (["quantize", r, "--mode", "static",
                                                         "--calibration", "5000", "--out",
                                                         "OUT"], {}), "more images than"),
    "threads 0": (lambda t, r: (["measure", r, "--threads", "0"], {}), "threads"),
    "quantize --out is its own input": (lambda t, r: (["quantize", _copy_run(r, t / "self"),
                                                       "--mode", "static", "--out",
                                                       t / "self"], {}),
                                        "is the run being read"),
    "distill --out is its teacher": (lambda t, r: (["distill", "--teacher", _copy_run(
        r, t / "teach"), "--student", "mlp:width=0.5", "--out", t / "teach", "--epochs", "1"],
        {}), "is the run being read"),
    "EDGEPRESS_DATA_DIR missing": (lambda t, r: (["train", "--model", "mlp", "--data",
                                                  "fashion-mnist", "--out", "OUT"],
                                                 {"EDGEPRESS_DATA_DIR": str(t / "nowhere")}),
                                   "is not a folder"),
    "EDGEPRESS_DATA_DIR without the files": (lambda t, r: (["train", "--model", "mlp", "--data",
                                                            "fashion-mnist", "--out", "OUT"],
                                                           {"EDGEPRESS_DATA_DIR": str(t)}),
                                             "lacks the Fashion-MNIST"),
    "unreachable database": (lambda t, r: (["search", r, "--out", "OUT", "--storage",
                                            "postgresql://u:pw@127.0.0.1:9/x"], {}), "u:***@"),
    "search budget below 0": (lambda t, r: (["search", r, "--out", "OUT", "--budget-pts", "-1"],
                                            {}), "budget"),
    "out is a file": (lambda t, r: (["train", "--model", "mlp", "--data", "digits", "--out",
                                     _a_file(t)], {}), "not a directory"),
}


def _trunc(t, r):
    p = t / "trunc.onnx"
    p.write_bytes((r / "model.onnx").read_bytes()[:500])
    return p


def _random(t):
    p = t / "random.onnx"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    return p


def _no_weights(r, t):
    d = _copy_run(r, t / "noweights")
    (d / "model.safetensors").unlink()
    return d


def _bad_json(r, t):
    d = _copy_run(r, t / "badjson")
    (d / "model.json").write_text('{"schema": 1, "architecture": ')
    return d


def _no_shape(r, t):
    d = _copy_run(r, t / "noshape")
    meta = json.loads((d / "model.json").read_text())
    del meta["architecture"]["input_shape"]
    (d / "model.json").write_text(json.dumps(meta))
    return d


def _flipped(p):
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0x01
    p.write_bytes(bytes(b))
    return p


def _cut(p):
    p.write_bytes(p.read_bytes()[:-40])
    return p


def _more_bytes(manifest):
    manifest["tensors"][0]["streams"][0]["bytes"] += 1000


def _huge_shape(manifest):
    manifest["tensors"][0]["shape"] = [1 << 20, 1 << 10]


def _a_file(t):
    p = t / "afile"
    p.write_text("x")
    return p


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_nothing_left(case, mlp_run, tmp_path, capsys,
                                                   monkeypatch):
    setup, phrase = CASES[case]
    work = tmp_path / "w"
    work.mkdir()
    argv, env = setup(work, mlp_run)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "OUT"
    argv = [out if a == "OUT" else a for a in argv]
    before, run_before = _listing(tmp_path), _listing(mlp_run)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, (case, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgepress: error:"), (case, err)
    assert phrase in lines[0], (case, lines[0])
    assert not out.exists(), case
    after = _listing(tmp_path)
    assert not [p for p in after - before if Path(p).name.startswith(".")], case  # no temp
    assert _listing(mlp_run) == run_before, case  # the input was not touched


def test_an_archive_decompression_bomb_is_refused(tmp_path, capsys, monkeypatch):
    from edgepress.pack import coders

    monkeypatch.setattr(coders, "MAX_DECODED_BYTES", 1 << 20)
    code, _, err = run_cli(capsys, "unpack", _bomb_archive(tmp_path), "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1 and "refused" in err, err
    assert not (tmp_path / "o").exists()


def test_two_writers_to_one_output_the_second_is_refused(mlp_run, tmp_path, capsys):
    from edgepress.locks import lock_path, output_lock

    out = tmp_path / "q"
    with output_lock(out):  # the first writer (this process stands for it)
        holder = subprocess.run(
            [sys.executable, "-m", "edgepress", "quantize", str(mlp_run), "--mode", "static",
             "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert holder.returncode == 2
    assert f"pid {os.getpid()}" in holder.stderr and holder.stderr.count("\n") == 1
    assert not out.exists() and not lock_path(out).exists()  # released: no stale lock file
    code, _, err = run_cli(capsys, "quantize", mlp_run, "--mode", "static", "--out", out)
    assert code == 0 and out.is_dir()


def test_a_moved_folder_of_runs_keeps_its_links(mlp_run, tmp_path, capsys):
    """Runs side by side record their parent relative to themselves: moved together, the child
    still finds its parent (fidelity measured); the parent gone, it still measures, with
    ``fidelity: null`` and a note."""
    a = tmp_path / "a"
    _copy_run(mlp_run, a / "mlp")
    code, _, err = run_cli(capsys, "quantize", a / "mlp", "--mode", "static", "--out",
                           a / "int8")
    assert code == 0, err
    meta = json.loads((a / "int8" / "model.json").read_text())
    assert meta["provenance"]["parent_relative"] == "../mlp"
    b = tmp_path / "b"
    a.rename(b)  # the absolute parent path is gone; the relative one holds
    code, _, err = run_cli(capsys, "measure", b / "int8", "--json", tmp_path / "m.json")
    assert code == 0, err
    rec = json.loads((tmp_path / "m.json").read_text())
    assert rec["fidelity"]["top1_agreement"] > 0.9 and rec["fidelity_note"] is None
    shutil.rmtree(b / "mlp")
    code, _, err = run_cli(capsys, "measure", b / "int8", "--json", tmp_path / "m2.json")
    assert code == 0, err
    rec = json.loads((tmp_path / "m2.json").read_text())
    assert rec["fidelity"] is None and "not there" in rec["fidelity_note"]


def test_a_full_disk_is_one_line_and_leaves_nothing(mlp_run, tmp_path):
    """Writes past a file-size limit fail as a full disk does (EFBIG / ENOSPC)."""
    import resource

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    out = tmp_path / "q"
    proc = subprocess.run([sys.executable, "-m", "edgepress", "quantize", str(mlp_run),
                           "--mode", "static", "--out", str(out)], capture_output=True,
                          text=True, timeout=120, preexec_fn=small_files)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "cannot write" in proc.stderr, proc.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- interruption -------------------------------------------------------------------------------

SLOW_RECIPE = ("- step: prune\n  method: channel\n  channel_ratio: 0.5\n  finetune_epochs: 1\n"
               "- step: structure\n  method: lowrank\n  energy: 0.9\n  finetune_epochs: 400\n")


def _interrupt(argv: list, ready, sig: int, timeout: float = 120, env: dict | None = None
               ) -> tuple[int, str, float]:
    """Start the CLI, send ``sig`` once ``ready()`` holds; return (exit code, stderr, seconds
    from the signal to the exit)."""
    p = subprocess.Popen([sys.executable, "-m", "edgepress", *map(str, argv)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, **(env or {})})
    deadline = time.time() + timeout
    while not ready() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()[1]
    t0 = time.perf_counter()
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    return p.returncode, err, time.perf_counter() - t0


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".*") if p.name.endswith((".tmp", ".old"))]


def test_interrupted_compress_keeps_finished_steps_and_resumes(mlp_run, tmp_path):
    sig = signal.SIGINT  # SIGTERM: the search's test
    recipe = _recipe(tmp_path, SLOW_RECIPE)
    out = tmp_path / "c"
    # a step is finished once its key (step.json) is written, just after its run lands
    # (model.json): a signal between the two leaves the step to be redone, not reused
    first = out / "steps" / "01-prune" / "step.json"
    code, err, secs = _interrupt(["compress", mlp_run, "--recipe", recipe, "--out", out,
                                  "--no-progress"], first.is_file, sig)
    assert code == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("edgepress: error: interrupted") and "resume" in line
    assert secs < 10, secs
    steps = sorted(p.name for p in (out / "steps").iterdir())
    assert steps == ["01-prune"]  # complete or absent: nothing half-written
    assert (out / "steps" / "01-prune" / "figures.json").is_file() or (
        out / "steps" / "01-prune" / "metrics.json").is_file()
    assert not _leftovers(tmp_path) and not (out / "model.json").exists()
    fast = _recipe(tmp_path, SLOW_RECIPE.replace("finetune_epochs: 400", "finetune_epochs: 1"))
    again = subprocess.run([sys.executable, "-m", "edgepress", "compress", str(mlp_run),
                            "--recipe", str(fast), "--out", str(out)], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "inputs unchanged, reused" in again.stderr  # step 1 was not redone
    assert (out / "model.json").is_file()


def test_interrupted_search_resumes(mlp_run, tmp_path):
    import optuna

    out = tmp_path / "s"
    db = out / "search.db"

    def one_trial_done() -> bool:  # trial 1's folder exists: trial 0 has finished
        return (out / "trials" / "0001").is_dir()

    argv = ["search", mlp_run, "--out", out, "--trials", "4", "--max-epochs", "1",
            "--latency-seconds", "0.1", "--no-progress"]
    code, err, secs = _interrupt(argv, one_trial_done, signal.SIGTERM)
    assert code == 130 and "interrupted (SIGTERM)" in err, err
    st = optuna.load_study(study_name="edgepress-search", storage=f"sqlite:///{db}")
    done = sum(t.state.is_finished() and t.state.name != "FAIL" for t in st.get_trials())
    assert done >= 1 and not _leftovers(tmp_path)
    again = subprocess.run([sys.executable, "-m", "edgepress", *map(str, argv)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    st = optuna.load_study(study_name="edgepress-search", storage=f"sqlite:///{db}")
    finished = [t for t in st.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]
    assert 4 <= len(finished) <= 5 and (out / "front.json").is_file()


def test_interrupted_compare_exits_130_and_writes_nothing(mlp_run, tmp_path):
    t0 = time.time()
    out = tmp_path / "cmp.json"
    code, err, secs = _interrupt(["compare", mlp_run, mlp_run, "--data", "digits", "--json",
                                  out], lambda: time.time() - t0 > 4, signal.SIGINT,
                                 env={"EDGEPRESS_LATENCY_SECONDS": "30"})
    assert code == 130 and err.strip().splitlines()[-1].startswith("edgepress: error: interr"), \
        (code, err)
    assert secs < 10 and not out.exists() and not _leftovers(tmp_path)


def test_an_interrupt_while_the_cli_starts_is_one_line_and_exit_130(mlp_run, tmp_path):
    """Ctrl-C while the CLI's modules load or its parser is built (a loaded host can take
    seconds there): exit 130 and one ``interrupted`` line, never a traceback."""
    t0 = time.time()
    out = tmp_path / "cmp.json"
    code, err, _ = _interrupt(["compare", mlp_run, mlp_run, "--data", "digits", "--json", out],
                              lambda: time.time() - t0 > 0.3, signal.SIGINT)
    assert code == 130, (code, err)
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        "edgepress: error: interrupted"), err
    assert not out.exists()

