"""The in-memory dataset types and the constructors over a user's arrays."""

import numpy as np
import pytest

from jaxunlearn.data import arrays
from jaxunlearn.errors import DataError


def test_split_rejects_inconsistent_arrays():
  with pytest.raises(ValueError):
    arrays.Split(np.zeros((3, 2, 2, 1), np.float32), np.zeros(2, np.int32), np.arange(3))


def test_from_arrays_keeps_the_rows_and_fills_absent_splits_empty():
  x = np.arange(12, dtype=np.float64).reshape(6, 2)
  ds = arrays.from_arrays(x, [0, 1, 2, 0, 1, 2], ids=[5, 4, 3, 2, 1, 0], val=(x[:2], [1, 1]))
  assert ds.num_classes == 3 and ds.image_shape == (2,)
  assert ds.train.images.dtype == np.float32 and np.array_equal(ds.train.images, x)
  assert ds.train.ids.tolist() == [5, 4, 3, 2, 1, 0] and ds.train.labels.dtype == np.int32
  assert len(ds.val) == 2 and len(ds.test) == 0 and ds.test.images.shape == (0, 2)
  # labels stored as whole floats are class ids too
  assert arrays.split_from_arrays(x, np.array([0.0, 1, 2, 0, 1, 2])).labels.tolist()[:3] == [
    0,
    1,
    2,
  ]


@pytest.mark.parametrize(
  "kwargs,message",
  [
    ({"x": np.array([[0.0], [np.nan]])}, "train inputs hold NaN or infinity in row 1"),
    ({"x": np.array([[1e39], [0.0]])}, "row 0"),  # float64 that float32 cannot hold
    ({"y": np.eye(2, dtype=np.int32)}, r"one-hot labels: pass labels.argmax\(-1\)"),
    ({"y": [0, -1]}, "class ids ≥ 0, got -1"),
    ({"y": [0, 0.5]}, "integer class ids"),
    ({"y": [0, 1, 1]}, "2 inputs but 3 labels"),
    ({"ids": [7, 7]}, "ids are not unique"),
    ({"x": np.array([["a"], ["b"]])}, "pass numbers"),
    ({"val": (np.zeros((1, 3)), [0])}, r"val inputs have shape \(3,\), train \(1,\)"),
    ({"num_classes": 1}, "num_classes=1 but labels go up to 1"),
  ],
)
def test_bad_arrays_are_refused_in_one_line_naming_the_fix(kwargs, message):
  args = {"x": np.zeros((2, 1)), "y": [0, 1]} | kwargs
  with pytest.raises(DataError, match=message):
    arrays.from_arrays(args.pop("x"), args.pop("y"), **args)
