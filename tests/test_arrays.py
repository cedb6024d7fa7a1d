"""Reading Flower arrays with the header parse cached gives what Flower's own reader gives."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from flowerbed.models.factory import build_model
from flowerbed.protocol.arrays import to_numpy, to_state_dict
from flowerbed.protocol.model_spec import ModelSpec

ARRAYS = {
    "float32 4D": np.random.default_rng(0).normal(size=(8, 3, 3, 3)).astype(np.float32),
    "Fortran order": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "big-endian int": np.arange(6, dtype=">i4").reshape(2, 3),
    "0-d": np.array(3.5),
    "empty": np.zeros((0, 3), np.int64),
    "bool": np.array([True, False, True]),
}


@pytest.mark.parametrize("name", ARRAYS)
def test_each_array_reads_back_as_flower_reads_it(name):
    array = Array(ARRAYS[name])
    ours, flowers = to_numpy(array), array.numpy()
    assert ours.dtype == flowers.dtype and ours.shape == flowers.shape
    assert np.array_equal(ours, flowers)
    assert ours.flags.writeable and ours.flags.c_contiguous == flowers.flags.c_contiguous


def test_a_model_state_reads_back_as_flower_reads_it_twice_over():
    """The second read of the same shapes is served from the header cache."""
    record = ArrayRecord(build_model(ModelSpec("small-cnn", 2, 1, 2, (28, 28))).state_dict())
    for _ in range(2):
        ours, flowers = to_state_dict(record), record.to_torch_state_dict()
        assert list(ours) == list(flowers)
        assert all(torch.equal(ours[k], flowers[k]) for k in flowers)


def test_a_version_2_header_reads_back():
    values = np.arange(5, dtype=np.float64)
    raw = io.BytesIO()
    np.lib.format.write_array(raw, values, version=(2, 0), allow_pickle=False)
    array = Array(dtype="float64", shape=(5,), stype="numpy.ndarray", data=raw.getvalue())
    assert np.array_equal(to_numpy(array), values)


def test_an_object_array_a_party_sent_is_refused_as_flower_refuses_it():
    raw = io.BytesIO()
    np.lib.format.write_array(raw, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    array = Array(dtype="object", shape=(1,), stype="numpy.ndarray", data=raw.getvalue())
    with pytest.raises(ValueError, match="allow_pickle"):
        to_numpy(array)


def test_data_shorter_than_its_header_says_fails_as_flower_fails():
    good = Array(np.arange(10, dtype=np.float32))
    cut = Array(dtype=good.dtype, shape=good.shape, stype=good.stype, data=good.data[:-8])
    with pytest.raises(ValueError):
        cut.numpy()
    with pytest.raises(ValueError):
        to_numpy(cut)
