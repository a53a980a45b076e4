"""The deletion ledger both the API and the command write and read (issue 22)."""

import json

import numpy as np
import pytest

from jaxunlearn.data import DeletionLedger, forget_set_from_rows, from_arrays
from jaxunlearn.data.ledger import data_digest, request_only
from jaxunlearn.errors import DataError, ForgetSpecError

DS = from_arrays(
  np.arange(20, dtype=np.float32).reshape(10, 2), [0, 1] * 5, ids=np.arange(10) + 100
)


def _series(*requests):
  ledger = DeletionLedger(anchor="/runs/orig", data_digest=data_digest(DS))
  for rows in requests:
    request = forget_set_from_rows(DS, rows)
    step, _ = ledger.begin(DS, request)
    ledger = ledger.add(DS, request, step, method="igs", workdir=f"/runs/{len(ledger)}")
  return ledger


def test_requests_in_order_with_what_each_forgot_and_the_union():
  ledger = _series([0, 1], [1, 2, 3])
  assert [r.rows for r in ledger.requests] == [(0, 1), (2, 3)]  # row 1 was gone already
  assert [r.ids for r in ledger.requests] == [(100, 101), (102, 103)]
  assert ledger.forgotten_ids().tolist() == [100, 101, 102, 103]
  union = ledger.forgotten(DS)
  assert union.forget_idx.tolist() == [0, 1, 2, 3]
  assert union.digest == forget_set_from_rows(DS, [0, 1, 2, 3]).digest


def test_a_request_applies_once():
  ledger = _series([0, 1], [4])
  with pytest.raises(ForgetSpecError, match=r"applied already \(request 1 in /runs/0\)"):
    ledger.begin(DS, forget_set_from_rows(DS, [0, 1]))
  with pytest.raises(ForgetSpecError, match="forgotten already"):
    ledger.begin(DS, forget_set_from_rows(DS, [1, 4]))


def test_other_data_is_refused():
  other = from_arrays(np.zeros((10, 2), np.float32), [0, 1] * 5, ids=np.arange(10) + 100)
  with pytest.raises(DataError, match="other data"):
    _series([0]).begin(other, forget_set_from_rows(other, [5]))
  # integer widths do not make other data
  same = from_arrays(DS.train.images, DS.train.labels.astype(np.int64), ids=DS.train.ids)
  assert data_digest(same) == data_digest(DS)


def test_json_round_trip_and_metrics_of_the_last_request():
  ledger = _series([0], [5, 6]).with_metrics({"UA": 50.0}, {"UA": 100.0})
  back = DeletionLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))
  assert back == ledger
  assert back.requests[-1].request_metrics == {"UA": 100.0} and back.requests[0].metrics == {}


def test_runs_written_before_the_ledger_read_back():
  cli = {
    "root_original": "/runs/orig",
    "requests": [
      {"forget_spec": "ids:a.txt", "forget_digest": "d1", "ids": [100], "classes": [],
       "workdir": "/runs/r1", "method": "igs", "time": "t"},
    ],
  }  # fmt: skip
  api = {"requests": [{"rows": [3], "ids": [103], "digest": "d2", "method": "ga", "time": "t"}]}
  a, b = DeletionLedger.from_metadata(cli), DeletionLedger.from_metadata(api)
  assert a.anchor == "/runs/orig" and a.requests[0].spec == "ids:a.txt"
  assert a.requests[0].digest == "d1" and a.requests[0].workdir == "/runs/r1"
  assert b.anchor is None and b.requests[0].digest == "d2" and b.requests[0].rows == (3,)
  assert len(DeletionLedger.from_metadata({"kind": "pretrain"})) == 0


def test_a_request_is_judged_as_the_union_is():
  a = forget_set_from_rows(DS, [0, 2], classes=(0,))
  ledger = DeletionLedger().add(DS, a, a, method="igs")
  step, union = ledger.begin(DS, forget_set_from_rows(DS, [1]))
  own = request_only(step, union)
  assert own.forget_idx.tolist() == [1] and own.retain_idx.tolist() == union.retain_idx.tolist()
  assert own.forget_classes == (0,)
  assert own.test_retain_idx.tolist() == union.test_retain_idx.tolist()
