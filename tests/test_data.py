import numpy as np
import pytest

from edgepress.data import calibration_subset, default_data, load_data
from edgepress.errors import InputError


def test_digits_splits_are_fixed_and_scaled(digits):
    again = load_data("digits")
    assert digits.x_train.dtype == np.float32 and digits.x_train.shape[1:] == (1, 8, 8)
    assert 0.0 <= digits.x_train.min() and digits.x_train.max() <= 1.0
    sizes = [len(digits.y_train), len(digits.y_val), len(digits.y_test)]
    assert sum(sizes) == 1797 and sizes == [1257, 270, 270]
    np.testing.assert_array_equal(again.x_test, digits.x_test)
    assert again.index_hashes == digits.index_hashes
    # stratified: every class in every split
    for y in (digits.y_train, digits.y_val, digits.y_test):
        assert set(np.unique(y)) == set(range(10))


def test_fashion_mnist_contract_splits():
    if default_data() != "fashion-mnist":
        pytest.skip("dataset-fashion-mnist not installed")
    ds = load_data("fashion-mnist")
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (55_000, 5_000, 10_000)
    assert ds.x_train.shape[1:] == (1, 28, 28) and ds.x_train.dtype == np.float32
    assert float(ds.x_test.max()) == 1.0 and float(ds.x_test.min()) == 0.0


def test_npz_with_and_without_validation(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 6, 6), dtype=np.uint8)
    y = rng.integers(0, 3, 50)
    np.savez(tmp_path / "a.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    ds = load_data(f"npz:{tmp_path / 'a.npz'}")
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (36, 4, 10)
    assert ds.x_train.shape[1:] == (1, 6, 6) and ds.x_train.max() <= 1.0
    np.savez(tmp_path / "b.npz", x_train=x[:30], y_train=y[:30], x_val=x[30:40], y_val=y[30:40],
             x_test=x[40:], y_test=y[40:])
    assert len(load_data(f"npz:{tmp_path / 'b.npz'}").y_val) == 10


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x03\x04truncated"])
def test_malformed_npz_is_input_error(tmp_path, content):
    p = tmp_path / "bad.npz"
    p.write_bytes(content)
    with pytest.raises(InputError, match="npz"):
        load_data(f"npz:{p}")


def test_npz_missing_arrays(tmp_path):
    np.savez(tmp_path / "c.npz", x_train=np.zeros((4, 2, 2), np.uint8))
    with pytest.raises(InputError, match="lacks"):
        load_data(f"npz:{tmp_path / 'c.npz'}")


def test_unknown_data():
    with pytest.raises(InputError, match="unknown data"):
        load_data("cifar-100")


def test_calibration_subset_from_train(digits):
    x1, h1 = calibration_subset(digits, 64, seed=0)
    x2, h2 = calibration_subset(digits, 64, seed=0)
    _, h3 = calibration_subset(digits, 64, seed=1)
    assert x1.shape == (64, 1, 8, 8) and h1 == h2 and h1 != h3
    np.testing.assert_array_equal(x1, x2)
    train_rows = {r.tobytes() for r in digits.x_train}
    assert all(r.tobytes() in train_rows for r in x1)
    with pytest.raises(InputError):
        calibration_subset(digits, 0)
