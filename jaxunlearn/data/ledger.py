"""The deletion ledger: every deletion request applied to a model, in order.

One record for :func:`jaxunlearn.unlearn` and ``python -m experiments.unlearn``: both
write it into the checkpoint metadata (``metadata["ledger"]``) and read it back, so a
series of requests started with one continues with the other, and a request sent twice
is refused by both.

A :class:`DeletionRequest` keeps what was asked (``spec``, ``digest`` of all the ids it names)
and what it did (``ids`` and ``rows`` newly forgotten: ids forgotten by an earlier
request are not forgotten again). The ledger adds the ``anchor`` (the workdir of the
model before the first request, which IGS's budget holds against) and ``data_digest``
(the training data the series runs on). The union of every request's ids is what the
model has forgotten, what it is evaluated on and what its retrained reference leaves
out.

Example:
  >>> import numpy as np
  >>> from jaxunlearn.data import forget_set_from_rows, from_arrays
  >>> ds = from_arrays(np.zeros((8, 2)), [0, 1] * 4)
  >>> ledger = DeletionLedger(data_digest=data_digest(ds))
  >>> step, union = ledger.begin(ds, forget_set_from_rows(ds, [0, 1]))
  >>> ledger = ledger.add(ds, forget_set_from_rows(ds, [0, 1]), step, method="igs")
  >>> step, union = ledger.begin(ds, forget_set_from_rows(ds, [1, 2]))
  >>> step.forget_idx.tolist(), union.forget_idx.tolist()
  ([2], [0, 1, 2])
  >>> ledger.begin(ds, forget_set_from_rows(ds, [0, 1]))
  Traceback (most recent call last):
  ...
  jaxunlearn.errors.ForgetSpecError: forget spec 'rows': this request was applied already ...
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib

import numpy as np

from jaxunlearn.data.forget import (
  ForgetSet,
  forget_set_from_rows,
  rows_of_ids,
  successive,
)
from jaxunlearn.errors import DataError, ForgetSpecError

__all__ = ["DeletionLedger", "DeletionRequest", "data_digest", "request_only"]


def data_digest(dataset) -> str:
  """sha256 of the training split (images, labels, ids): ties a ledger to its data."""
  h = hashlib.sha256()
  # Labels and ids as int64: the same data read by a command or passed as arrays (whose
  # integer widths may differ) is the same data.
  train = dataset.train
  for a in (train.images, np.asarray(train.labels, "<i8"), np.asarray(train.ids, "<i8")):
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def request_only(step_set: ForgetSet, union: ForgetSet) -> ForgetSet:
  """This request's rows, judged as the union is (the same retain rows and test classes):
  what its own metrics (``request_metrics``) are computed on."""
  return dataclasses.replace(
    step_set,
    test_retain_idx=union.test_retain_idx,
    test_forget_idx=union.test_forget_idx,
    forget_classes=union.forget_classes,
  )


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class DeletionRequest:
  """One deletion request.

  Attributes:
    spec: what was asked (a forget spec such as ``class:0``, or ``forget`` /
      ``forget_ids`` for arrays given to the API).
    digest: sha256 of every id the request names (``ForgetSet.digest``).
    ids, rows: the train ids and rows this request forgot (not those forgotten earlier).
    classes: the classes it forgets (class-wise requests), else ``()``.
    method: the unlearning method that served it.
    time: when it was applied (UTC, ISO 8601).
    workdir: where its result was saved, if it was.
    metrics: the model's metrics after it, over every row forgotten so far.
    request_metrics: the same over this request's rows only (UA, MIA of these rows).
  """

  spec: str
  digest: str
  ids: tuple[int, ...]
  rows: tuple[int, ...]
  classes: tuple[int, ...] = ()
  method: str = ""
  time: str = ""
  workdir: str | None = None
  metrics: dict = dataclasses.field(default_factory=dict)
  request_metrics: dict = dataclasses.field(default_factory=dict)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    for k in ("ids", "rows", "classes"):
      d[k] = list(d[k])
    return d

  @classmethod
  def from_dict(cls, d: dict) -> DeletionRequest:
    # Runs written before the ledger: the command stored forget_spec / forget_digest,
    # the API digest and rows.
    return cls(
      spec=d.get("spec", d.get("forget_spec", "forget")),
      digest=d.get("digest", d.get("forget_digest", "")),
      ids=tuple(int(i) for i in d.get("ids", ())),
      rows=tuple(int(r) for r in d.get("rows", ())),
      classes=tuple(int(c) for c in d.get("classes", ())),
      method=d.get("method", ""),
      time=d.get("time", ""),
      workdir=d.get("workdir"),
      metrics=dict(d.get("metrics", {})),
      request_metrics=dict(d.get("request_metrics", {})),
    )


@dataclasses.dataclass(frozen=True)
class DeletionLedger:
  """The requests applied so far, the anchor model and the data they ran on.

  Attributes:
    requests: :class:`DeletionRequest` records, oldest first.
    anchor: workdir of the model before the first request (``None``: not saved as a
      workdir; the API then stores it in its own checkpoint).
    data_digest: :func:`data_digest` of the training data ("" if not recorded).
  """

  requests: tuple[DeletionRequest, ...] = ()
  anchor: str | None = None
  data_digest: str = ""

  def __len__(self) -> int:
    return len(self.requests)

  def forgotten_ids(self) -> np.ndarray:
    """Every id forgotten so far (sorted)."""
    ids = [np.asarray(r.ids, np.int64) for r in self.requests]
    return np.sort(np.concatenate(ids)) if ids else np.zeros(0, np.int64)

  def forgotten(self, dataset) -> ForgetSet | None:
    """The union of every request as a forget set of ``dataset`` (``None`` if empty)."""
    if not self.requests:
      return None
    self.check_data(dataset)
    rows = rows_of_ids(dataset.train.ids, self.forgotten_ids(), "earlier requests")
    classes = sorted({c for r in self.requests for c in r.classes})
    return forget_set_from_rows(dataset, rows, spec="earlier requests", classes=classes)

  def check_data(self, dataset) -> None:
    """Raises ``DataError`` when ``dataset`` is not the data the series ran on."""
    if self.data_digest and self.data_digest != data_digest(dataset):
      raise DataError(
        "these deletion requests were applied on other data (another training split); pass the "
        "same x, y and ids (or the same dataset) as the earlier requests"
      )

  def begin(self, dataset, request: ForgetSet) -> tuple[ForgetSet, ForgetSet]:
    """``(step_set, union)`` for a new ``request`` (see :func:`~jaxunlearn.data.successive`).

    Raises:
      ForgetSpecError: the request was applied already (same ids), or every one of its
        examples is forgotten already.
    """
    for i, r in enumerate(self.requests, 1):
      if r.digest == request.digest:
        where = f" in {r.workdir}" if r.workdir else ""
        raise ForgetSpecError(
          f"forget spec {request.spec!r}: this request was applied already (request {i}"
          f"{where}); a request applies once"
        )
    before = self.forgotten(dataset)
    if before is None:
      return request, request
    return successive(dataset, before, request)

  def add(
    self,
    dataset,
    request: ForgetSet,
    step_set: ForgetSet,
    *,
    method: str,
    workdir=None,
    time: str | None = None,
    metrics: dict | None = None,
    request_metrics: dict | None = None,
  ) -> DeletionLedger:
    """This ledger with ``request`` (served by ``step_set``, from :meth:`begin`) added."""
    record = DeletionRequest(
      spec=request.spec,
      digest=request.digest,
      ids=tuple(int(i) for i in np.asarray(dataset.train.ids)[step_set.forget_idx]),
      rows=tuple(int(r) for r in step_set.forget_idx),
      classes=tuple(request.forget_classes),
      method=method,
      time=time or _now(),
      workdir=None if workdir is None else str(workdir),
      metrics=dict(metrics or {}),
      request_metrics=dict(request_metrics or {}),
    )
    return dataclasses.replace(self, requests=(*self.requests, record))

  def with_metrics(self, metrics: dict, request_metrics: dict) -> DeletionLedger:
    """This ledger with the last request's metrics set (known after its run)."""
    last = dataclasses.replace(
      self.requests[-1], metrics=dict(metrics), request_metrics=dict(request_metrics)
    )
    return dataclasses.replace(self, requests=(*self.requests[:-1], last))

  def to_dict(self) -> dict:
    return {
      "requests": [r.to_dict() for r in self.requests],
      "anchor": self.anchor,
      "data_digest": self.data_digest,
    }

  @classmethod
  def from_dict(cls, d: dict) -> DeletionLedger:
    return cls(
      requests=tuple(DeletionRequest.from_dict(r) for r in d.get("requests", ())),
      anchor=d.get("anchor"),
      data_digest=d.get("data_digest", ""),
    )

  @classmethod
  def from_metadata(cls, meta: dict) -> DeletionLedger:
    """The ledger of a checkpoint's metadata; runs written before the ledger (the
    command's ``requests`` and ``root_original``, the API's ``requests``) read too;
    a model no request touched (pretrained, retrained) has an empty ledger."""
    if "ledger" in meta:
      return cls.from_dict(meta["ledger"])
    if "requests" in meta:
      return cls(
        requests=tuple(DeletionRequest.from_dict(r) for r in meta["requests"]),
        anchor=meta.get("root_original"),
      )
    return cls()
