import json
import time

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from tests.conftest import contract_ok, run_cli

from edgepress.checkpoint import WEIGHTS, atomic_dir, load_run, new_meta, save_model, write_json
from edgepress.errors import InputError
from edgepress.pack import FORMAT_VERSION, huffman, pack, read_archive
from edgepress.pack.archive import HEADER_BYTES
from edgepress.pack.coders import encode_stream
from edgepress.pack.tensors import gap_entries, gap_positions
from edgepress.prune import FinetuneOptions, PruneConfig, prune_
from edgepress.zoo import create_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _save_run(out, model, digits):
    meta = new_meta(zoo="mlp", kwargs={}, input_shape=digits.input_shape, num_classes=10,
                    data="digits", splits=digits.splits_record(), seed=0)
    with atomic_dir(out) as tmp:
        save_model(tmp, model, meta)
    return out


def _mlp(digits, seed=0):
    torch.manual_seed(seed)
    return create_model("mlp", input_shape=digits.input_shape, num_classes=10)


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory, digits):
    return _save_run(tmp_path_factory.mktemp("pack") / "dense", _mlp(digits), digits)


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory, digits):
    model = _mlp(digits, 1)
    with torch.no_grad():
        for p in model.parameters():  # a spread of magnitudes, some negative: -0.0 after masking
            p.mul_(3.0)
    prune_(model, PruneConfig(method="magnitude", sparsity=0.9, scope="global",
                              finetune=FinetuneOptions(epochs=0)), data=digits, progress=False)
    return _save_run(tmp_path_factory.mktemp("pack") / "pruned", model, digits)


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory, digits):
    """Every weight matrix snapped to 16 levels (weight sharing, 4-bit indices)."""
    model = _mlp(digits, 2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                levels = torch.linspace(float(p.min()), float(p.max()), 16)
                p.copy_(levels[(p.reshape(-1, 1) - levels).abs().argmin(1)].reshape(p.shape))
    return _save_run(tmp_path_factory.mktemp("pack") / "shared", model, digits)


def _same_tensors(run_dir, state):
    """Bit for bit, once -0.0 is read as +0.0 (the archive's one documented exception)."""
    orig = load_file(str(run_dir / WEIGHTS))
    assert orig.keys() == state.keys()
    for k, a in orig.items():
        b = state[k]
        assert a.dtype == b.dtype and a.shape == b.shape, k
        canon = np.where(a == 0, np.zeros((), a.dtype), a)
        assert canon.tobytes() == b.tobytes(), k
        assert torch.equal(torch.from_numpy(a), torch.from_numpy(b)), k




# --- Huffman, gaps, coder choice -------------------------------------------------------------

def test_canonical_huffman_round_trip_and_predicted_size():
    rng = np.random.default_rng(0)
    s = np.minimum(rng.geometric(0.35, 200_000) - 1, 31).astype(np.uint8)
    freqs = np.bincount(s, minlength=32)
    lengths = huffman.code_lengths(freqs)
    assert (2.0 ** -lengths[lengths > 0].astype(float)).sum() == pytest.approx(1.0)  # complete
    buf = huffman.encode(s, lengths)
    assert len(buf) == huffman.encoded_bytes(freqs, lengths)
    assert np.array_equal(huffman.decode(buf, len(s), lengths), s)
    # within one bit per symbol of the entropy
    p = freqs[freqs > 0] / len(s)
    assert 8 * len(buf) / len(s) < -(p * np.log2(p)).sum() + 1


def test_huffman_limits_code_length_and_handles_one_symbol():
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])
    lengths = huffman.code_lengths(np.array(fib))  # unlimited, the rarest code would be 39 bits
    assert lengths.max() == huffman.MAX_BITS
    assert (2.0 ** -lengths.astype(float)).sum() == pytest.approx(1.0)
    s = np.repeat(np.arange(40, dtype=np.uint8), 3)
    assert np.array_equal(huffman.decode(huffman.encode(s, lengths), len(s), lengths), s)
    one = huffman.code_lengths(np.array([0, 7, 0]))
    assert one.tolist() == [0, 1, 0]
    assert huffman.decode(huffman.encode(np.ones(7, np.uint8), one), 7, one).tolist() == [1] * 7


def test_huffman_is_fast_on_a_large_stream():
    rng = np.random.default_rng(1)
    s = np.minimum(rng.geometric(0.3, 1_400_000) - 1, 31).astype(np.uint8)
    lengths = huffman.code_lengths(np.bincount(s, minlength=32))
    t0 = time.process_time()  # CPU time: the machine may be shared
    back = huffman.decode(huffman.encode(s, lengths), len(s), lengths)
    assert time.process_time() - t0 < 10  # ~1 s on one core
    assert np.array_equal(back, s)


def test_huffman_beats_raw_on_skewed_data_and_loses_on_uniform():
    rng = np.random.default_rng(2)
    skewed = rng.choice(16, 50_000, p=[0.5, 0.2, 0.1, 0.05, *[0.15 / 12] * 12]).astype(np.uint8)
    coded = encode_stream(skewed, 4)
    assert coded.coder == "huffman"
    assert coded.sizes["huffman"] < 0.65 * coded.sizes["raw"]  # entropy 2.46 of 4 bits
    uniform = rng.integers(0, 16, 50_000).astype(np.uint8)
    assert encode_stream(uniform, 4).coder == "raw"


def test_gap_entries_pad_long_gaps():
    # 2-bit entries: symbols 0..2 are "skip s zeros, then a value", 3 is "skip 3 zeros"
    positions = np.array([0, 3, 20])
    entries = gap_entries(positions, 2)
    assert entries.tolist() == [0, 2, 3, 3, 3, 3, 3, 1]
    assert gap_positions(entries, 2).tolist() == [0, 3, 20]
    rng = np.random.default_rng(3)
    pos = np.sort(rng.choice(100_000, 3_000, replace=False))
    for bits in range(1, 9):
        assert np.array_equal(gap_positions(gap_entries(pos, bits), bits), pos)


# --- archives of real runs -------------------------------------------------------------------

def test_dense_mlp_round_trips_bit_exactly(dense_run, tmp_path):
    info = pack(dense_run, out=tmp_path / "d.epz")
    size = (tmp_path / "d.epz").stat().st_size
    assert size == info["bytes"] == info["predicted_bytes"]
    assert info["params"] == sum(p.numel() for p in load_run(dense_run).build_model().parameters())
    assert info["fp32_bytes"] == 4 * info["params"]
    assert {t["layout"] for t in info["tensors"]} == {"dense"}
    assert 0.95 < info["ratio"] < 1.3  # random fp32 weights hardly compress
    meta, state = read_archive(tmp_path / "d.epz")
    assert meta == load_run(dense_run).meta
    orig = load_file(str(dense_run / WEIGHTS))
    assert all(orig[k].tobytes() == state[k].tobytes() for k in orig)  # no zeros: every bit


def test_pruned_mlp_round_trips_and_is_small(pruned_run, tmp_path):
    info = pack(pruned_run, out=tmp_path / "p.epz")
    assert (tmp_path / "p.epz").stat().st_size == info["predicted_bytes"]
    weights = [t for t in info["tensors"] if t["name"].endswith("weight")]
    assert all(t["layout"] == "sparse" for t in weights)
    assert info["nonzero"] < 0.12 * info["params"]
    assert info["negative_zeros_stored_as_zero"] > 0  # masked pruning leaves -0.0 behind
    # positions ≈ a few bits per non-zero, values 32 bits: far below the dense 32 bits per weight
    assert info["ratio"] > 5
    assert info["bytes"] < info["uncoded_bytes"]  # entropy coding helped
    _same_tensors(pruned_run, read_archive(tmp_path / "p.epz")[1])


def test_weight_shared_mlp_uses_codebooks(shared_run, tmp_path):
    info = pack(shared_run, out=tmp_path / "s.epz")
    assert (tmp_path / "s.epz").stat().st_size == info["predicted_bytes"]
    weights = [t for t in info["tensors"] if t["name"].endswith("weight")]
    assert all(t["values"] == "codebook" and t["codebook_size"] <= 16 for t in weights)
    assert all(t["index_bits"] <= 4 for t in weights)
    assert info["ratio"] > 7  # ≤ 4-bit indices instead of 32-bit floats
    assert info["streams"]["indices"]["bytes"] <= info["streams"]["indices"]["raw_bytes"]
    _same_tensors(shared_run, read_archive(tmp_path / "s.epz")[1])


def test_pack_and_unpack_cli_rebuild_a_complete_run(pruned_run, tmp_path, capsys):
    archive, report = tmp_path / "m.epz", tmp_path / "m.json"
    code, out, err = run_cli(capsys, "pack", pruned_run, "--out", archive, "--json", report)
    assert code == 0, err
    assert "predicted" in out and "smaller than fp32" in out
    info = json.loads(report.read_text())
    assert info["bytes"] == archive.stat().st_size
    code, out, err = run_cli(capsys, "unpack", archive, "--out", tmp_path / "run2")
    assert code == 0, err
    run2 = load_run(tmp_path / "run2")
    assert run2.meta["archive"]["bytes"] == archive.stat().st_size
    assert {"model.json", "model.safetensors", "model.onnx", "metrics.json"} <= {
        p.name for p in (tmp_path / "run2").iterdir()}
    ok, msg = contract_ok(tmp_path / "run2")
    assert ok, msg
    _same_tensors(pruned_run, load_file(str(tmp_path / "run2" / WEIGHTS)))
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_run(pruned_run).build_model()(x), run2.build_model()(x))


def _damaged(src, tmp_path, name, edit):
    blob = bytearray(src.read_bytes())
    edit(blob)
    path = tmp_path / name
    path.write_bytes(bytes(blob))
    return path


@pytest.mark.parametrize("case, edit, message", [
    ("corrupt", lambda b: b.__setitem__(len(b) - 10, b[len(b) - 10] ^ 0xFF), "checksum"),
    ("version", lambda b: b.__setitem__(8, FORMAT_VERSION + 1), "format version 2"),
    ("truncated", lambda b: b.__delitem__(slice(len(b) - 100, None)), "truncated"),
    ("not-an-archive", lambda b: b.__setitem__(slice(0, 8), b"PK\x03\x04abcd"), "not an"),
])
def test_damaged_archives_exit_2(dense_run, tmp_path, capsys, case, edit, message):
    good = tmp_path / "good.epz"
    pack(dense_run, out=good)
    bad = _damaged(good, tmp_path, f"{case}.epz", edit)
    with pytest.raises(InputError, match=message):
        read_archive(bad)
    code, _, err = run_cli(capsys, "unpack", bad, "--out", tmp_path / "never")
    assert code == 2
    assert err.startswith("edgepress: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "never").exists()


def test_pack_bad_inputs_exit_2(dense_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "pack", tmp_path / "no-such-run", "--out", tmp_path / "x.epz")
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(capsys, "pack", dense_run, "--out", tmp_path)
    assert code == 2 and "is a directory" in err
    code, _, err = run_cli(capsys, "unpack", tmp_path / "missing.epz", "--out", tmp_path / "r")
    assert code == 2 and "does not exist" in err
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    write_json(weightless / "model.json", load_run(dense_run).meta)
    code, _, err = run_cli(capsys, "pack", weightless, "--out", tmp_path / "w.epz")
    assert code == 2 and "no PyTorch weights" in err
    assert HEADER_BYTES == 54
