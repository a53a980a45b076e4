"""Load any workdir with one call: original, retrained or unlearned, CLI or Python API.

:func:`load` reads the checkpoint's own metadata to decide what it holds:

* ``pretrain`` / ``retrain`` (``experiments.pretrain``, :func:`~jaxunlearn.engine.training.train`):
  the model rebuilt from its config, params, BatchNorm state, the SGD state on request;
* ``unlearned`` by ``experiments.unlearn`` / ``compare``: the model rebuilt from the
  description stored with the run (or, for runs written before it was stored, from the
  original workdir it names), and on request the method's optimiser state — λ and the
  dual state included;
* ``unlearned`` by :func:`jaxunlearn.unlearn` on a user's own model: the arrays as they
  were saved (nested dicts), or in the structure of ``like`` when given.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.engine import checkpoint as ckpt
from jaxunlearn.engine import methods as methods_lib
from jaxunlearn.engine import steps
from jaxunlearn.engine.training import model_from_metadata, restore_template
from jaxunlearn.errors import CheckpointError, ConfigError
from jaxunlearn.nn.adapters import engine_params, in_form


@dataclasses.dataclass
class Loaded:
  """What a workdir holds.

  Attributes:
    kind: ``"pretrain"``, ``"retrain"`` or ``"unlearned"``.
    params, model_state: the model's arrays.
    metadata: the checkpoint's metadata (config, dataset, forget set, requests, versions).
    opt_state: the optimiser state (λ for IGS), when loaded with ``optimizer_state=True``.
    fm: the functional model (``None`` for a user's own model: bring its apply function).
    step: the checkpoint's step (epochs for training, steps for unlearning).
    workdir: the directory it was loaded from.
    params_form: ``"variables"`` when ``params`` are a linen module's whole variables
      (as they were passed to :func:`jaxunlearn.unlearn`), ``"params"`` otherwise.
  """

  kind: str
  params: Any
  model_state: Any
  metadata: dict
  opt_state: Any = None
  fm: Any = None
  step: int = 0
  workdir: pathlib.Path | None = None
  params_form: str = "params"

  @property
  def engine_params(self):
    """The params as the engine holds them (a linen model's ``"params"`` collection)."""
    return engine_params(self.params_form, self.params)

  def predict(self, x):
    """Logits of ``x`` in eval mode."""
    if self.fm is None:
      raise ConfigError(
        "this workdir holds a user's own model; call your apply function on .params"
      )
    return steps.make_predict(self.fm)(self.params, self.model_state, x)

  @property
  def multiplier(self):
    """λ of the optimiser state (IGS, primal–dual, explicit surgery)."""
    if self.opt_state is None:
      raise ConfigError("load(workdir, optimizer_state=True) to read λ")
    from jaxunlearn import transforms  # noqa: PLC0415 - a reader, not a dependency

    return transforms.multiplier(self.opt_state)


def _origin_metadata(meta: dict, workdir: pathlib.Path) -> dict:
  """Metadata that describes the model of an unlearned run."""
  if "model" in meta:
    return meta
  original = meta.get("original")
  if not original:
    raise CheckpointError(f"{workdir}: the run names no model description and no original")
  with ckpt.Checkpointer(pathlib.Path(original) / "checkpoints", create=False) as m:
    return m.metadata()


def _opt_template(meta: dict, params) -> Any:
  cfg = methods_lib.config_from_dict(meta["config"])
  method = methods_lib.get_method(cfg.method)
  # What a method prepares (SalUn's mask) has the params' structure; its values do not
  # shape the state.
  prepared = jax.tree.map(jnp.zeros_like, params) if method.prepare is not None else None
  return methods_lib.build_transformation(cfg, prepared).init(params)


def _api_opt_state(manager, meta: dict, raw: dict, which: str):
  """The optimiser state of a :func:`jaxunlearn.unlearn` run on a user's own model: in
  the method's own state classes when the run used the config's optimiser (so
  ``jaxunlearn.multiplier`` and ``loss_weights`` read it), as saved (nested dicts)
  when it used the user's own, which cannot be rebuilt."""
  try:
    template = dict(raw, opt_state=_opt_template(meta, raw["params"]))
    return manager.restore(template, which=which)["opt_state"]
  except (CheckpointError, ValueError, TypeError, KeyError):
    return raw.get("opt_state")


def load(
  workdir,
  *,
  which: str = "latest",
  optimizer_state: bool = False,
  like: Any = None,
) -> Loaded:
  """Restores the model (and on request the optimiser state) that ``workdir`` holds.

  Args:
    workdir: a directory written by ``experiments.pretrain``, ``experiments.unlearn``,
      :func:`~jaxunlearn.engine.training.train` or :func:`jaxunlearn.unlearn`.
    which: ``"latest"`` or ``"best"`` (by validation accuracy, training runs only).
    optimizer_state: also restore the optimiser state (λ and the dual state for IGS).
    like: for a user's own model, params whose structure to restore into: what you
      passed to :func:`jaxunlearn.unlearn` (a linen module's variables, a dict, a state).

  Examples:
    >>> import tempfile, numpy as np
    >>> from jaxunlearn.engine.config import TrainConfig
    >>> from jaxunlearn.engine.training import train
    >>> workdir = tempfile.mkdtemp()
    >>> _ = train(TrainConfig(epochs=1), workdir, progress=False)
    >>> model = load(workdir)
    >>> model.kind, model.predict(np.zeros((2, 8, 8, 1), np.float32)).shape
    ('pretrain', (2, 10))
  """
  workdir = pathlib.Path(workdir)
  directory = workdir / "checkpoints"
  if not directory.is_dir():
    raise CheckpointError(f"{workdir} holds no checkpoints (no {directory})")
  with ckpt.Checkpointer(directory, create=False) as manager:
    meta = manager.metadata(which=which)
    kind = meta.get("kind")
    step = manager.latest_step() if which == "latest" else manager.best_step()
    loaded = functools.partial(Loaded, kind, metadata=meta, step=step, workdir=workdir)
    if kind in ("pretrain", "retrain"):
      fm, template = restore_template(meta)
      got = manager.restore(template, which=which)
      opt_state = got["opt_state"] if optimizer_state else None
      return loaded(got["params"], got["model_state"], opt_state=opt_state, fm=fm)
    if kind != "unlearned":
      raise CheckpointError(f"{workdir}: unknown run kind {kind!r}")
    raw = manager.restore_raw(which=which)
    api = meta.get("source") == "api"
    if api and "model" not in meta:  # a user's own model: its arrays as saved
      form = meta.get("params_form", "params")
      model_state = raw.get("model_state", {})
      params = in_form(form, raw["params"], model_state)  # the form the user passed
      params = params if like is None else in_structure_of(params, like)
      opt_state = _api_opt_state(manager, meta, raw, which) if optimizer_state else None
      return loaded(params, model_state, opt_state=opt_state, params_form=form)
    _, fm, params, model_state = model_from_metadata(_origin_metadata(meta, workdir))
    # Exact template for the model (and optimiser); the rest as it was saved. The API's
    # optimiser may be the user's own, so its state comes back as saved.
    template = dict(raw)
    template.update(params=params, model_state=model_state)
    if optimizer_state and not api:
      template["opt_state"] = _opt_template(meta, params)
    got = manager.restore(template, which=which)
    opt_state = got["opt_state"] if optimizer_state else None
    return loaded(got["params"], got["model_state"], opt_state=opt_state, fm=fm)


def in_structure_of(saved: Any, like: Any) -> Any:
  """``saved`` (params restored as nested dicts) in the structure of ``like``, matched
  by key path; a mismatch raises ``CheckpointError``."""
  if len(jax.tree.leaves(saved)) != len(jax.tree.leaves(like)):
    raise CheckpointError("`like` has another number of arrays than the saved params")
  return jax.tree.unflatten(jax.tree.structure(like), _in_saved_order(saved, like))


def _in_saved_order(saved: Any, like: Any) -> list:
  """The saved params' arrays in the flattening order of ``like`` (matched by key path)."""
  from orbax.checkpoint import tree as ocp_tree  # noqa: PLC0415

  saved = {
    ".".join(ocp_tree.str_keypath(p)): v for p, v in jax.tree_util.tree_flatten_with_path(saved)[0]
  }
  out = []
  for path, ref in jax.tree_util.tree_flatten_with_path(like)[0]:
    name = ".".join(ocp_tree.str_keypath(path))
    if name not in saved or np.shape(saved[name]) != np.shape(ref):
      raise CheckpointError(f"`like` does not match the saved params at {name!r}")
    out.append(saved[name])
  return out
