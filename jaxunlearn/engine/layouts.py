"""How an unlearning step sees its data: the *mixed* batches of the paper, or *split* ones.

* ``mixed`` (the paper's protocol, the default): epochs over the union of the forget and
  retain sets in shuffled batches of ``n_retain + n_forget`` rows, each example once an
  epoch, random labels redrawn each epoch, one forward pass. The retain and forget losses
  are the per-row means of each part scaled by its share of the batch (weights 1/B on its
  rows, 0 elsewhere), as the paper's code computes them; a batch may hold no forget row.
* ``split``: every step ``n_retain`` retain rows and ``n_forget`` forget rows in separate
  forward passes (a fixed forget share; BatchNorm statistics from the retain pass only).

Both give a step the same :class:`Parts`, and a step gives a single-shape method's loss
those parts with its context (:class:`StepInputs`). Every layout implements
:class:`Layout`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn import data as data_lib
from jaxunlearn import diffusion
from jaxunlearn.errors import ConfigError
from jaxunlearn.objectives import cross_entropy, per_example_cross_entropy


class Parts(NamedTuple):
  """What a layout's forward pass gives a step, per part of the batch.

  ``retain_*``: the retain rows' logits, labels and weights; ``forget_*``: the forget
  rows' logits, targets (``forget_label``: the random labels), true labels and weights.
  Weights are ``None`` for plain means (split) or per-row weights summing to the part's
  share of the batch (mixed). The per-example losses under the model's loss
  (:func:`example_loss`): ``retain_losses`` (to the retain labels), ``forget_losses`` (to
  the forget targets), ``forget_true_losses`` (to the forget rows' true labels). A pass
  over one part leaves the other's fields ``None``; a DDPM has no logits.
  """

  retain_logits: jax.Array | None = None
  retain_label: jax.Array | None = None
  retain_weight: jax.Array | None = None
  retain_losses: jax.Array | None = None
  forget_logits: jax.Array | None = None
  forget_label: jax.Array | None = None
  forget_true_label: jax.Array | None = None
  forget_weight: jax.Array | None = None
  forget_losses: jax.Array | None = None
  forget_true_losses: jax.Array | None = None


class StepInputs(NamedTuple):
  """What a single-shape method's ``loss(inputs, cfg)`` sees: the :class:`Parts` fields,
  then the step's context — the step index, the run's progress in [0, 1), the params
  being differentiated, and the original model's logits on each part and its loss on the
  forget rows' true labels (for methods with ``needs_teacher``; ``None`` otherwise)."""

  retain_logits: jax.Array | None
  retain_label: jax.Array | None
  retain_weight: jax.Array | None
  retain_losses: jax.Array | None
  forget_logits: jax.Array | None
  forget_label: jax.Array | None
  forget_true_label: jax.Array | None
  forget_weight: jax.Array | None
  forget_losses: jax.Array | None
  forget_true_losses: jax.Array | None
  step: jax.Array
  progress: jax.Array
  params: Any
  teacher_retain_logits: jax.Array | None = None
  teacher_forget_logits: jax.Array | None = None
  teacher_forget_losses: jax.Array | None = None  # its per-example loss on forget_true_label


class Layout(Protocol):
  """How an unlearning step sees its data (:class:`Mixed`, :class:`Split`,
  :class:`Denoise`, :class:`Answers`): a batch as a pure function of (seed, step), its
  shapes, the rows a data-parallel step splits, and the forward passes over it."""

  name: str
  #: A batch's retain loss at fixed params is a function of its rows only (no random
  #: noise or timesteps per step), so per-row losses of θ_0 can stand for its anchor.
  rows_fix_losses: bool

  def batch(
    self, dataset, forget_set, step: int, cfg, n_retain: int, n_forget: int, anchor=None
  ) -> dict:
    """The host arrays of step ``step``, by name; with ``anchor`` (per-train-row losses
    of θ_0), also ``anchor_losses``: those of the batch's retain rows (of every row for
    mixed batches, whose weights pick the retain ones)."""

  def shapes(self, dataset, n_retain: int, n_forget: int, anchor: bool = False) -> dict:
    """``jax.ShapeDtypeStruct`` of each array of :meth:`batch`."""

  def rows(self, n_retain: int, n_forget: int) -> tuple[int, ...]:
    """The row counts of the batch's forward passes (a mesh must divide each)."""

  def forward(self, fm, params, model_state, batch) -> tuple[Parts, Any]:
    """Both parts, in the fewest forward passes, and the new model state."""

  def retain_part(self, fm, params, model_state, batch) -> tuple[Parts, Any]:
    """At least the retain fields, and the new model state."""

  def forget_part(self, fm, params, model_state, batch) -> tuple[Parts, Any]:
    """At least the forget fields, and the new model state."""

  def teacher_logits(self, fm, teacher, batch) -> tuple[jax.Array, jax.Array]:
    """The original model's eval-mode logits on the retain and forget rows."""

  def saliency_gradient(self, fm, params, model_state, dataset, forget_set, cfg) -> Any:
    """The gradient SalUn's saliency mask is taken from."""

  def row_targets(self, split) -> Any:
    """What a row's loss compares the model's output with: its labels (classifiers) or,
    for a language model, its tokens."""


def example_loss(fm):
  """The per-example loss ``loss(logits, labels) -> (B,)`` a model is trained with.

  Cross-entropy unless the model carries its own (``fm.example_loss``: a user's loss
  given to :func:`jaxunlearn.unlearn` travels with the model adapter it wraps).
  """
  return getattr(fm, "example_loss", None) or per_example_cross_entropy


def cross_entropy_saliency(fm, params, model_state, dataset, forget_set, cfg, batch_size=256):
  """Σ over the forget set of ∇ CE(true labels), eval mode: SalUn's saliency gradient."""
  del cfg
  images = dataset.train.images[forget_set.forget_idx]
  labels = dataset.train.labels[forget_set.forget_idx]
  grad_sum = _cross_entropy_grad_sum(fm)
  total = optax.tree.zeros_like(params)
  for i in range(0, len(labels), batch_size):
    x, y = jnp.asarray(images[i : i + batch_size]), jnp.asarray(labels[i : i + batch_size])
    total = optax.tree.add(total, grad_sum(params, model_state, x, y))
  return total


# The saliency gradients, one jitted function per model with the model state an argument
# (not a constant closed into a fresh jit per SalUn run: every run traced it again).
@functools.lru_cache(maxsize=32)
def _cross_entropy_grad_sum(fm):
  def grad_sum(p, model_state, x, y):
    # mean × count (not a sum): the exact arithmetic of the committed SalUn results
    return jax.grad(
      lambda p: cross_entropy(fm.apply(p, model_state, x, train=False)[0], y) * len(y)
    )(p)

  return jax.jit(grad_sum)


def _labels(split):
  return split.labels


def _with_losses(fm, parts: Parts) -> Parts:
  loss = example_loss(fm)
  if parts.retain_logits is not None:
    parts = parts._replace(retain_losses=loss(parts.retain_logits, parts.retain_label))
  if parts.forget_logits is not None:
    parts = parts._replace(
      forget_losses=loss(parts.forget_logits, parts.forget_label),
      forget_true_losses=loss(parts.forget_logits, parts.forget_true_label),
    )
  return parts


def _both_parts(layout, fm, params, model_state, batch) -> tuple[Parts, Any]:
  """A split layout's two forwards joined: the retain part's fields and new model state
  (BatchNorm statistics from the retain pass only), the forget part's fields."""
  retain, new_state = layout.retain_part(fm, params, model_state, batch)
  forget, _ = layout.forget_part(fm, params, model_state, batch)
  return retain._replace(**{k: v for k, v in forget._asdict().items() if v is not None}), new_state


def _mixed_weights(batch: dict):
  """``(retain weights, forget weights)`` of a mixed batch's rows: 1/B on each part's rows,
  0 elsewhere (the paper's per-part means scaled by the part's share of the batch)."""
  share = jnp.float32(1.0 / batch["is_forget"].shape[0])
  is_forget = batch["is_forget"].astype(jnp.float32)
  return (1.0 - is_forget) * share, is_forget * share


def _with_anchor(batch: dict, anchor, rows) -> dict:
  """``batch`` with the anchor's per-row losses of its ``rows`` (train rows), if any."""
  if anchor is not None:
    batch["anchor_losses"] = np.asarray(anchor, np.float32)[rows]
  return batch


def _augmented(batch: dict, cfg, step: int) -> dict:
  """The training augmentation on every image of the batch, a pure function of (seed, step)."""
  if not cfg.augment:
    return batch
  rng = np.random.default_rng([cfg.seed, step, 11])
  return {k: data_lib.augment(v, rng) if k.endswith("image") else v for k, v in batch.items()}


class Split:
  """Separate retain and forget forwards, a fixed number of each a step."""

  name = "split"
  rows_fix_losses = True
  saliency_gradient = staticmethod(cross_entropy_saliency)
  row_targets = staticmethod(_labels)

  @staticmethod
  def batch(dataset, forget_set, step, cfg, n_retain, n_forget, anchor=None) -> dict:
    b = data_lib.unlearning_batch(
      dataset,
      forget_set,
      step,
      seed=cfg.seed,
      n_retain=n_retain,
      n_forget=n_forget,
      forget_labels=cfg.forget_labels,
    )
    out = _augmented({k: b[k] for k in Split.shapes(dataset, n_retain, n_forget)}, cfg, step)
    return _with_anchor(out, anchor, b["retain_index"])

  @staticmethod
  def shapes(dataset, n_retain, n_forget, anchor=False) -> dict:
    image = dataset.train.images.shape[1:]
    f32, i32 = dataset.train.images.dtype, jnp.int32
    out = {
      "retain_image": jax.ShapeDtypeStruct((n_retain, *image), f32),
      "retain_label": jax.ShapeDtypeStruct((n_retain,), i32),
      "forget_image": jax.ShapeDtypeStruct((n_forget, *image), f32),
      "forget_label": jax.ShapeDtypeStruct((n_forget,), i32),
      "forget_true_label": jax.ShapeDtypeStruct((n_forget,), i32),
    }
    if anchor:
      out["anchor_losses"] = jax.ShapeDtypeStruct((n_retain,), jnp.float32)
    return out

  @staticmethod
  def rows(n_retain, n_forget) -> tuple[int, ...]:
    return (n_retain, n_forget)

  @staticmethod
  def retain_part(fm, params, model_state, batch):
    logits, new_state = fm.apply(params, model_state, batch["retain_image"], train=True)
    part = Parts(retain_logits=logits, retain_label=batch["retain_label"])
    return _with_losses(fm, part), new_state

  @staticmethod
  def forget_part(fm, params, model_state, batch):
    logits, new_state = fm.apply(params, model_state, batch["forget_image"], train=True)
    part = Parts(
      forget_logits=logits,
      forget_label=batch["forget_label"],
      forget_true_label=batch["forget_true_label"],
    )
    return _with_losses(fm, part), new_state

  @staticmethod
  def forward(fm, params, model_state, batch):
    return _both_parts(Split, fm, params, model_state, batch)

  @staticmethod
  def teacher_logits(fm, teacher, batch):
    t_params, t_state = teacher
    r = fm.apply(t_params, t_state, batch["retain_image"], train=False)[0]
    f = fm.apply(t_params, t_state, batch["forget_image"], train=False)[0]
    return r, f


class Mixed:
  """One shuffled batch over forget ∪ retain, one forward, part losses weighted 1/B."""

  name = "mixed"
  rows_fix_losses = True
  saliency_gradient = staticmethod(cross_entropy_saliency)
  row_targets = staticmethod(_labels)

  @staticmethod
  def batch(dataset, forget_set, step, cfg, n_retain, n_forget, anchor=None) -> dict:
    b = data_lib.union_batch(
      dataset,
      forget_set,
      step,
      seed=cfg.seed,
      batch_size=n_retain + n_forget,
      forget_labels=cfg.forget_labels,
    )
    out = _augmented({k: b[k] for k in Mixed.shapes(dataset, n_retain, n_forget)}, cfg, step)
    return _with_anchor(out, anchor, b["index"])

  @staticmethod
  def shapes(dataset, n_retain, n_forget, anchor=False) -> dict:
    n = n_retain + n_forget
    image = dataset.train.images.shape[1:]
    out = {
      "image": jax.ShapeDtypeStruct((n, *image), dataset.train.images.dtype),
      "label": jax.ShapeDtypeStruct((n,), jnp.int32),
      "true_label": jax.ShapeDtypeStruct((n,), jnp.int32),
      "is_forget": jax.ShapeDtypeStruct((n,), jnp.bool_),
    }
    if anchor:
      out["anchor_losses"] = jax.ShapeDtypeStruct((n,), jnp.float32)
    return out

  @staticmethod
  def rows(n_retain, n_forget) -> tuple[int, ...]:
    return (n_retain + n_forget,)

  @staticmethod
  def forward(fm, params, model_state, batch):
    logits, new_state = fm.apply(params, model_state, batch["image"], train=True)
    retain_weight, forget_weight = _mixed_weights(batch)
    parts = Parts(
      retain_logits=logits,
      retain_label=batch["label"],
      retain_weight=retain_weight,
      forget_logits=logits,
      forget_label=batch["label"],
      forget_true_label=batch["true_label"],
      forget_weight=forget_weight,
    )
    return _with_losses(fm, parts), new_state

  retain_part = forward
  forget_part = forward

  @staticmethod
  def teacher_logits(fm, teacher, batch):
    t_params, t_state = teacher
    t = fm.apply(t_params, t_state, batch["image"], train=False)[0]
    return t, t


DIFFUSION_STEPS = 1000  # T of the linear schedule, as in the paper's DDPM


class Denoise:
  """The mixed batches of a class-conditional DDPM (the paper's generative setting).

  Rows as :class:`Mixed`; each row also gets a timestep t and a noise ε drawn from (seed,
  step), images in [0, 1] become x_0 in [−1, 1]. One forward conditioned on the true
  labels gives ε̂(x_t, t, y) (with gradient), one on the rows' targets (random wrong
  classes for forget rows) gives the stop-gradient ε̂(x_t, t, c'). Per-example losses:
  ``retain_losses`` = ``forget_true_losses`` = ‖ε̂(x_t, t, y) − ε‖² (the denoising loss;
  gradient ascent negates it on forget rows) and ``forget_losses`` = ‖ε̂(x_t, t, y) −
  sg(ε̂(x_t, t, c'))‖² (the paper's "rl" forget loss). Every method that reads only these
  losses runs unchanged; methods that read logits (SCRUB, NPO) do not apply.
  """

  name = "denoise"
  rows_fix_losses = False  # a noise and a timestep drawn per row and step
  row_targets = staticmethod(_labels)  # the class a row is conditioned on

  @staticmethod
  def saliency_gradient(fm, params, model_state, dataset, forget_set, cfg):
    """Σ over one epoch of batches of ∇ (the forget rows' denoising loss): every forget
    row once, at the noise and timestep its batch draws."""
    n = len(forget_set.forget_idx) + len(forget_set.retain_idx)
    rows = cfg.n_retain + cfg.n_forget
    grad = _denoise_forget_grad(fm)
    total = optax.tree.zeros_like(params)
    for step in range(data_lib.steps_per_epoch(n, rows)):
      b = Denoise.batch(dataset, forget_set, step, cfg, cfg.n_retain, cfg.n_forget)
      b = {k: jnp.asarray(v) for k, v in b.items()}
      total = optax.tree.add(total, grad(params, model_state, b))
    return total

  @staticmethod
  def batch(dataset, forget_set, step, cfg, n_retain, n_forget, anchor=None) -> dict:
    if anchor is not None:
      raise ConfigError("a DDPM batch's losses change with its noise: no per-row anchor")
    b = Mixed.batch(dataset, forget_set, step, cfg, n_retain, n_forget)
    rng = np.random.default_rng([cfg.seed, step, 13])
    n = len(b["label"])
    b["t"] = rng.integers(0, DIFFUSION_STEPS, size=n).astype(np.int32)
    b["noise"] = rng.standard_normal(b["image"].shape).astype(np.float32)
    return b

  @staticmethod
  def shapes(dataset, n_retain, n_forget, anchor=False) -> dict:
    del anchor  # never (see batch)
    out = Mixed.shapes(dataset, n_retain, n_forget)
    n = n_retain + n_forget
    out["t"] = jax.ShapeDtypeStruct((n,), jnp.int32)
    out["noise"] = jax.ShapeDtypeStruct(out["image"].shape, jnp.float32)
    return out

  rows = Mixed.rows

  @staticmethod
  def forward(fm, params, model_state, batch):
    schedule = diffusion.linear_schedule(DIFFUSION_STEPS)
    x_t = diffusion.add_noise(schedule, 2.0 * batch["image"] - 1.0, batch["t"], batch["noise"])
    eps, new_state = fm.apply(
      params, model_state, (x_t, batch["t"], batch["true_label"]), train=True
    )
    target = jax.lax.stop_gradient(
      fm.apply(params, model_state, (x_t, batch["t"], batch["label"]), train=False)[0]
    )
    denoise = diffusion.per_example_mse(eps, batch["noise"])
    retain_weight, forget_weight = _mixed_weights(batch)
    parts = Parts(
      retain_label=batch["true_label"],
      retain_weight=retain_weight,
      retain_losses=denoise,
      forget_label=batch["label"],
      forget_true_label=batch["true_label"],
      forget_weight=forget_weight,
      forget_losses=diffusion.per_example_mse(eps, target),
      forget_true_losses=denoise,
    )
    return parts, new_state

  retain_part = forward
  forget_part = forward

  @staticmethod
  def teacher_logits(fm, teacher, batch):
    del fm, teacher, batch
    raise ConfigError("methods that read a teacher's logits (scrub, npo) do not apply to DDPMs")


def with_answers(tokens: np.ndarray, answers: np.ndarray, answer_id: int, pad_id: int):
  """``tokens`` (rows ``<bos> question <ans> …``) with each row's answer replaced by the
  matching row of ``answers`` (token ids, padded with ``pad_id``), cut to the row length."""
  out = np.full_like(tokens, pad_id)
  length = tokens.shape[1]
  for i, (row, answer) in enumerate(zip(tokens, answers)):
    start = int(np.flatnonzero(row == answer_id)[0]) + 1
    answer = answer[answer != pad_id][: length - start]
    out[i, :start] = row[:start]
    out[i, start : start + len(answer)] = answer
  return out


class Answers:
  """Question–answer rows of a language model (a :class:`~jaxunlearn.data.tofu.QADataset`):
  separate retain and forget batches as :class:`Split`, of token ids ``(B, T)``.

  The model's loss (``fm.example_loss``, e.g. :func:`~jaxunlearn.objectives.answer_losses`)
  is per row on its answer tokens. ``retain_losses``: the retain rows'; ``forget_true_losses``:
  the forget rows' own answers (gradient ascent, NPO); ``forget_losses``: the same
  questions answered "I don't know" (an answer drawn per row from (seed, step) among the
  dataset's ``idk``), the language-model analogue of random labels and a positive loss
  IGS can weigh. A forget step is two forward passes (the answers and the IDK rows).
  """

  name = "answers"
  rows_fix_losses = True  # token rows, no noise: per-row losses of θ_0 can anchor

  @staticmethod
  def row_targets(split):
    return split.images

  @staticmethod
  def batch(dataset, forget_set, step, cfg, n_retain, n_forget, anchor=None) -> dict:
    b = data_lib.unlearning_batch(
      dataset, forget_set, step, seed=cfg.seed, n_retain=n_retain, n_forget=n_forget,
      forget_labels="true",
    )  # fmt: skip
    rng = np.random.default_rng([cfg.seed, step, 17])
    idk = dataset.idk[rng.integers(0, len(dataset.idk), size=n_forget)]
    out = {
      "retain_tokens": b["retain_image"],
      "forget_tokens": b["forget_image"],
      "forget_idk": with_answers(b["forget_image"], idk, dataset.answer_id, dataset.pad_id),
    }
    return _with_anchor(out, anchor, b["retain_index"])

  @staticmethod
  def shapes(dataset, n_retain, n_forget, anchor=False) -> dict:
    length, i32 = dataset.train.images.shape[1], jnp.int32
    out = {
      "retain_tokens": jax.ShapeDtypeStruct((n_retain, length), i32),
      "forget_tokens": jax.ShapeDtypeStruct((n_forget, length), i32),
      "forget_idk": jax.ShapeDtypeStruct((n_forget, length), i32),
    }
    if anchor:
      out["anchor_losses"] = jax.ShapeDtypeStruct((n_retain,), jnp.float32)
    return out

  rows = Split.rows

  @staticmethod
  def retain_part(fm, params, model_state, batch):
    tokens = batch["retain_tokens"]
    logits, new_state = fm.apply(params, model_state, tokens, train=True)
    losses = example_loss(fm)(logits, tokens)
    return Parts(retain_logits=logits, retain_label=tokens, retain_losses=losses), new_state

  @staticmethod
  def forget_part(fm, params, model_state, batch):
    loss = example_loss(fm)
    tokens, idk = batch["forget_tokens"], batch["forget_idk"]
    logits, new_state = fm.apply(params, model_state, tokens, train=True)
    idk_logits, _ = fm.apply(params, model_state, idk, train=True)
    part = Parts(
      forget_logits=logits,
      forget_label=idk,
      forget_true_label=tokens,
      forget_losses=loss(idk_logits, idk),
      forget_true_losses=loss(logits, tokens),
    )
    return part, new_state

  @staticmethod
  def forward(fm, params, model_state, batch):
    return _both_parts(Answers, fm, params, model_state, batch)

  @staticmethod
  def teacher_logits(fm, teacher, batch):
    t_params, t_state = teacher
    r = fm.apply(t_params, t_state, batch["retain_tokens"], train=False)[0]
    f = fm.apply(t_params, t_state, batch["forget_tokens"], train=False)[0]
    return r, f

  @staticmethod
  def saliency_gradient(fm, params, model_state, dataset, forget_set, cfg, batch_size=256):
    """Σ over the forget rows of ∇ (their answer loss), eval mode (SalUn's saliency)."""
    del cfg
    tokens = dataset.train.images[forget_set.forget_idx]
    grad_sum = _answer_grad_sum(fm)
    total = optax.tree.zeros_like(params)
    for i in range(0, len(tokens), batch_size):
      t = jnp.asarray(tokens[i : i + batch_size])
      total = optax.tree.add(total, grad_sum(params, model_state, t))
    return total


@functools.lru_cache(maxsize=32)
def _denoise_forget_grad(fm):
  def forget_loss(p, model_state, b):
    return jnp.sum(Denoise.forward(fm, p, model_state, b)[0].forget_true_losses * b["is_forget"])

  return jax.jit(jax.grad(forget_loss))


@functools.lru_cache(maxsize=32)
def _answer_grad_sum(fm):
  loss = example_loss(fm)

  def total_loss(p, model_state, t):
    return jnp.sum(loss(fm.apply(p, model_state, t, train=False)[0], t))

  return jax.jit(jax.grad(total_loss))


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (Mixed, Split, Denoise, Answers)}
