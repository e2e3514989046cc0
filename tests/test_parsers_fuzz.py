"""Property-based tests (hypothesis): the recipe parser, the ``--model`` and ``--data`` spec
parsers and the ``.epz`` reader give a result or an :class:`InputError` for *any* input — never
another exception — and a damaged archive never decodes.
"""

import hashlib

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgepress.data import parse_data_spec
from edgepress.errors import InputError
from edgepress.imagefolder import parse_size
from edgepress.recipe import parse_recipe
from edgepress.zoo import ModelSpec

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _never_crashes(fn, *args):
    """``fn(*args)``, or ``None`` when it raised InputError; any other exception fails."""
    try:
        return fn(*args)
    except InputError as e:
        assert str(e).strip() and "\n" not in str(e).strip(), repr(e)  # one clear line
        return None


# --- recipes ----------------------------------------------------------------------------------

KEYS = ["step", "method", "mode", "sparsity", "channel_ratio", "energy", "bits", "nm",
        "finetune_epochs", "finetune_teacher", "granularity", "calibration", "student", "blocks",
        "scope", "train_subset", "version", "accuracy_budget", "sparsty", "ratio"]
STEPS = ["prune", "quantize", "distill", "structure", "prnue", ""]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(STEPS + ["magnitude", "channel", "static", "2:4", "lowrank",
                                             "cluster", "parent", "none", "tensor"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=12)
STEP = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6)
RECIPE_DOCS = st.one_of(st.lists(STEP, max_size=4), VALUES)


@FAST
@given(RECIPE_DOCS)
def test_any_yaml_recipe_parses_or_is_an_input_error(doc):
    text = yaml.safe_dump(doc, sort_keys=False)
    recipe = _never_crashes(parse_recipe, text)
    if recipe is not None:
        assert all(s.label for s in recipe.steps)


@FAST
@given(st.text(max_size=300))
def test_any_text_as_a_recipe_is_a_recipe_or_an_input_error(text):
    _never_crashes(parse_recipe, text)


@FAST
@given(st.binary(max_size=200))
def test_any_bytes_as_a_recipe_is_a_recipe_or_an_input_error(raw):
    _never_crashes(parse_recipe, raw.decode("utf-8", errors="replace"))


# --- --model and --data specs -----------------------------------------------------------------

MODEL_PARTS = st.lists(st.sampled_from(["mlp", "cnn", "lenet5", "mobilenet-mini", "vgg", ":",
                                        "width", "=", "0.5", "-1", "2", "nan", "inf", ",",
                                        "depth", "x", " ", "==", "1e309", "0"]), max_size=8)


@FAST
@given(st.one_of(MODEL_PARTS.map("".join), st.text(max_size=40)))
def test_any_model_spec_parses_or_is_an_input_error(text):
    spec = _never_crashes(ModelSpec.parse, text)
    if spec is not None:
        assert spec.name


DATA_PARTS = st.lists(st.sampled_from(["digits", "fashion-mnist", "npz:", "imagefolder:",
                                       "[", "]", "test=", "val=", ",", "@", "32x32", "x", "1",
                                       "0", "-1", " ", "10", "=", "dir", "/"]), max_size=10)


@FAST
@given(st.one_of(DATA_PARTS.map("".join), st.text(max_size=40)))
def test_any_data_spec_parses_or_is_an_input_error(text):
    spec = _never_crashes(parse_data_spec, text)
    if spec is not None:
        assert spec.base and all(n is None or n >= 1 for n in (spec.test, spec.val))


@FAST
@given(st.text(max_size=20))
def test_any_input_size_parses_or_is_an_input_error(text):
    hw = _never_crashes(parse_size, text)
    if hw is not None:
        assert min(hw) >= 1


# --- the .epz reader --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory, mlp_run):
    from edgepress.pack import pack

    out = tmp_path_factory.mktemp("epz") / "mlp.epz"
    pack(mlp_run, out=out)
    return out.read_bytes()


def _read(blob: bytes, tmp_path) -> object:
    from edgepress.pack.archive import read_archive

    p = tmp_path / f"{hashlib.sha256(blob).hexdigest()[:12]}.epz"
    p.write_bytes(blob)
    try:
        return _never_crashes(read_archive, p)
    finally:
        p.unlink()


MUTATION = st.tuples(st.sampled_from(["flip", "cut", "insert", "overwrite"]),
                     st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=16))


def _mutate(blob: bytes, how: tuple) -> bytes:
    kind, where, data = how
    i = int(where * len(blob))
    if kind == "flip":
        return blob[:i] + bytes([blob[i] ^ (data[0] or 1)]) + blob[i + 1:]
    if kind == "cut":
        return blob[:i]
    if kind == "insert":
        return blob[:i] + data + blob[i:]
    new = blob[:i] + data + blob[i + len(data):]
    return new if new != blob else blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1:]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MUTATION)
def test_a_mutated_archive_never_decodes(archive, tmp_path, how):
    bad = _mutate(archive, how)
    assert bad != archive
    assert _read(bad, tmp_path) is None  # refused with an InputError, never loaded


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_not_an_archive(tmp_path, raw):
    assert _read(raw, tmp_path) is None


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MUTATION)
def test_a_crafted_archive_decodes_or_is_an_input_error(archive, tmp_path, how):
    """A mutated payload with its checksum recomputed (a hostile file): an InputError or a
    decoded state, never another exception."""
    from edgepress.pack.archive import _HEAD, HEADER_BYTES

    magic, version, m_len, _, _ = _HEAD.unpack_from(archive)
    body = _mutate(archive[HEADER_BYTES:], how)
    m_len = min(m_len, len(body))
    head = _HEAD.pack(magic, version, m_len, len(body) - m_len, hashlib.sha256(body).digest())
    _read(head + body, tmp_path)
