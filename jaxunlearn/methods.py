r"""The catalogue of unlearning methods, each a small definition on shared step builders.

Three step shapes cover every method (see :mod:`jaxunlearn.unlearning_steps`):

* ``single``: one loss, one backprop — FT, GA, GradDiff (NegGrad+), RL, SalUn,
  ℓ1-sparse, SCRUB, NPO and linear scalarisation;
* ``weighted``: a stateful weighting transformation builds S from its state, one
  backprop — IGS (``igs``), FAMO (``famo``), primal–dual (``pdu``);
* ``aggregated``: per-objective gradients (two backprops) combined by an aggregator —
  explicit surgery (``explicit``), MGDA, PCGrad, CAGrad.

The forget objective L_f of the surgery, multi-objective and weighting methods is
``config.forget_objective``: ``"rl"`` (cross-entropy to random labels, the paper's) or
``"ga"`` (negative cross-entropy on true labels).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import jax.numpy as jnp
import optax

import jaxunlearn
from jaxunlearn import aggregators, objectives
from jaxunlearn.config import ConfigError


@dataclasses.dataclass(frozen=True)
class UnlearnConfig:
  """Hyperparameters of one unlearning run; every method reads the keys it needs.

  Shared budget: ``steps`` steps of ``n_retain`` retain and ``n_forget`` forget examples,
  SGD with ``learning_rate`` and ``momentum`` (constant, as in the paper).
  """
  method: str = "igs"
  steps: int = 100
  learning_rate: float = 0.01
  momentum: float = 0.9
  n_retain: int = 64
  n_forget: int = 16
  forget_labels: str = "random_wrong"     # random targets: "random_wrong" or "random_all"
  forget_objective: str = "rl"            # L_f of surgery/MOO/weighting methods: "rl" | "ga"
  seed: int = 0
  # implicit gradient surgery
  tolerance: float = 0.0                  # tolerated per-step increase of log L_r
  signal: str = "reevaluate"
  dual_lr: float = 1.0
  dual_weight_decay: float = 0.01
  init_multiplier: float = 0.0
  log_losses: bool = True
  # explicit surgery
  retain_weight: float = 0.0              # β in d = g_f + λ* g_r + β g_r
  # linear scalarisation, GradDiff
  retain_loss_weight: float = 1.0         # S = w·L_r + L_f
  graddiff_alpha: float = 1.0             # L = L_r − α·CE_forget
  # FAMO, PDU
  famo_lr: float = 0.025
  pdu_threshold: float = 0.05             # absolute retain-loss level ε_abs
  pdu_dual_lr: float = 0.1
  # CAGrad
  cagrad_c: float = 0.4
  # SalUn, ℓ1-sparse, SCRUB, NPO
  salun_sparsity: float = 0.5             # share of weights updated (largest |∇L_f|)
  l1_gamma: float = 1e-4                  # γ, decayed linearly to 0 over the run
  scrub_alpha: float = 1.0                # weight of KL to the teacher on retain
  scrub_gamma: float = 1.0                # weight of CE on retain
  scrub_max_fraction: float = 0.5         # max-steps (−KL on forget) in this first share
  npo_beta: float = 0.1

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Method:
  """An unlearning method: its step shape and how to build its transformation.

  ``loss(out, cfg)`` (single shape) maps forward outputs to the scalar to minimise;
  ``make_tx(cfg, inner)`` returns the transformation (weighted: wrapper over ``inner``;
  aggregated: aggregator chained before ``inner``).
  """
  name: str
  shape: str                                   # "single" | "weighted" | "aggregated"
  description: str
  loss: Optional[Callable] = None
  make_tx: Optional[Callable] = None
  needs_teacher: bool = False
  uses_random_labels: bool = False
  multiplier: bool = False                     # logs a λ


def forget_objective(out, cfg: UnlearnConfig):
  """L_f for surgery/MOO/weighting methods, from the forward outputs ``out``."""
  if cfg.forget_objective == "rl":
    return objectives.random_label_loss(out["forget_logits"], out["forget_label"])
  if cfg.forget_objective == "ga":
    return objectives.gradient_ascent_loss(out["forget_logits"], out["forget_true_label"])
  raise ConfigError(f"unknown forget_objective {cfg.forget_objective!r}; choose 'rl' or 'ga'")


def _retain(out):
  return objectives.cross_entropy(out["retain_logits"], out["retain_label"])


def _forget_ce(out):
  return objectives.cross_entropy(out["forget_logits"], out["forget_true_label"])


def _random_labels(out):
  return objectives.random_label_loss(out["forget_logits"], out["forget_label"])


def _scrub_loss(out, cfg):
  """Min-step: α·KL(teacher‖student) + γ·CE on retain; max-step: −KL on forget."""
  kl_r = objectives.kl_to_teacher(out["retain_logits"], out["teacher_retain_logits"])
  kl_f = objectives.kl_to_teacher(out["forget_logits"], out["teacher_forget_logits"])
  min_loss = cfg.scrub_alpha * kl_r + cfg.scrub_gamma * _retain(out)
  is_max = (out["step"] % 2 == 0) & (out["progress"] < cfg.scrub_max_fraction)
  return jnp.where(is_max, -kl_f, min_loss)


def _igs(cfg, inner):
  return jaxunlearn.implicit_gradient_surgery(
      inner, tolerance=cfg.tolerance, signal=cfg.signal, init_multiplier=cfg.init_multiplier,
      dual_optimizer=jaxunlearn.default_dual_optimizer(cfg.dual_lr, cfg.dual_weight_decay),
      # A gradient-ascent forget loss is negative: the log weighting needs positive losses.
      log_losses=cfg.log_losses and cfg.forget_objective != "ga")


def _famo(cfg, inner):
  if cfg.forget_objective == "ga":
    raise ConfigError("famo needs positive losses; use forget_objective=rl")
  return jaxunlearn.famo(inner, learning_rate=cfg.famo_lr)


METHODS = {m.name: m for m in [
    Method("igs", "weighted", "implicit gradient surgery (one backprop, dual λ)",
           make_tx=_igs, multiplier=True, uses_random_labels=True),
    Method("famo", "weighted", "FAMO loss weighting (one backprop)", make_tx=_famo,
           uses_random_labels=True),
    Method("pdu", "weighted", "primal–dual with an absolute retain threshold",
           make_tx=lambda cfg, inner: jaxunlearn.primal_dual(
               inner, threshold=cfg.pdu_threshold, dual_learning_rate=cfg.pdu_dual_lr),
           multiplier=True, uses_random_labels=True),
    Method("explicit", "aggregated", "explicit (closed-form) gradient surgery, two backprops",
           make_tx=lambda cfg, inner: optax.chain(jaxunlearn.explicit_gradient_surgery(
               tolerance=cfg.tolerance, retain_weight=cfg.retain_weight), inner),
           multiplier=True, uses_random_labels=True),
    Method("mgda", "aggregated", "MGDA min-norm direction",
           make_tx=lambda cfg, inner: optax.chain(aggregators.mgda(), inner),
           uses_random_labels=True),
    Method("pcgrad", "aggregated", "PCGrad conflict projection",
           make_tx=lambda cfg, inner: optax.chain(aggregators.pcgrad(), inner),
           uses_random_labels=True),
    Method("cagrad", "aggregated", "CAGrad conflict-averse direction",
           make_tx=lambda cfg, inner: optax.chain(aggregators.cagrad(cfg.cagrad_c), inner),
           uses_random_labels=True),
    Method("linear", "single", "linear scalarisation w·L_r + L_f",
           loss=lambda out, cfg: cfg.retain_loss_weight * _retain(out) + forget_objective(out, cfg),
           uses_random_labels=True),
    Method("ft", "single", "fine-tune on the retain set",
           loss=lambda out, cfg: _retain(out)),
    Method("ga", "single", "gradient ascent on the forget set",
           loss=lambda out, cfg: -_forget_ce(out)),
    Method("graddiff", "single", "GradDiff / NegGrad+: L_r − α·CE_forget",
           loss=lambda out, cfg: _retain(out) - cfg.graddiff_alpha * _forget_ce(out)),
    Method("rl", "single", "random labels on forget + CE on retain",
           loss=lambda out, cfg: _random_labels(out) + _retain(out), uses_random_labels=True),
    Method("salun", "single", "SalUn: RL with updates masked to salient weights",
           loss=lambda out, cfg: _random_labels(out) + _retain(out), uses_random_labels=True),
    Method("l1sparse", "single", "ℓ1-sparse fine-tuning: L_r + γ_t‖θ‖₁",
           loss=lambda out, cfg: _retain(out) + cfg.l1_gamma * (1 - out["progress"])
           * objectives.l1_norm(out["params"])),
    Method("scrub", "single", "SCRUB teacher–student max/min steps",
           loss=_scrub_loss, needs_teacher=True),
    Method("npo", "single", "NPO on forget + CE on retain",
           loss=lambda out, cfg: objectives.npo_loss(out["forget_logits"],
                                                     out["teacher_forget_logits"],
                                                     out["forget_true_label"], cfg.npo_beta)
           + _retain(out), needs_teacher=True),
]}


# Per-method defaults that differ from UnlearnConfig's (documented, applied by make_config):
# gradient ascent diverges at lr 1e-2 within 100 steps on digits (params reach 1e14).
METHOD_DEFAULTS = {
    "ga": {"learning_rate": 1e-3},
    "graddiff": {"learning_rate": 1e-3},
}


def make_config(method: str, scenario=None, **overrides) -> UnlearnConfig:
  """UnlearnConfig for ``method``, layered: UnlearnConfig defaults < ``scenario`` (shared by
  every method of a comparison) < the method's own defaults < ``overrides`` (the user's).

  Unknown keys raise :class:`ConfigError` naming the closest valid key.
  """
  get_method(method)
  fields = {f.name for f in dataclasses.fields(UnlearnConfig)}
  scenario = dict(scenario or {})
  unknown = sorted((set(overrides) | set(scenario)) - fields)
  if unknown:
    import difflib
    close = difflib.get_close_matches(unknown[0], fields, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown unlearning config key {unknown[0]!r}{hint}")
  return UnlearnConfig(**{**scenario, **METHOD_DEFAULTS.get(method, {}), **overrides,
                          "method": method})


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise ConfigError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
  return METHODS[name]


def validate(cfg: UnlearnConfig) -> UnlearnConfig:
  get_method(cfg.method)
  if not (cfg.learning_rate > 0):
    raise ConfigError(f"learning_rate must be > 0, got {cfg.learning_rate}")
  if cfg.steps <= 0 or cfg.n_retain <= 0 or cfg.n_forget <= 0:
    raise ConfigError("steps, n_retain and n_forget must be > 0")
  if cfg.forget_labels not in ("random_wrong", "random_all"):
    raise ConfigError(f"forget_labels must be 'random_wrong' or 'random_all', got "
                      f"{cfg.forget_labels!r}")
  if cfg.forget_objective not in ("rl", "ga"):
    raise ConfigError(f"forget_objective must be 'rl' or 'ga', got {cfg.forget_objective!r}")
  if cfg.signal not in jaxunlearn.surgery.SIGNALS:
    raise ConfigError(f"unknown signal {cfg.signal!r}; valid: {', '.join(jaxunlearn.surgery.SIGNALS)}")
  for f in dataclasses.fields(cfg):
    value = getattr(cfg, f.name)
    if isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f"{f.name} must be finite, got {value}")
  for key in ("dual_lr", "famo_lr", "pdu_dual_lr"):
    if getattr(cfg, key) < 0:
      raise ConfigError(f"{key} must be ≥ 0, got {getattr(cfg, key)}")
  if not 0 < cfg.salun_sparsity <= 1:
    raise ConfigError(f"salun_sparsity must be in (0, 1], got {cfg.salun_sparsity}")
  return cfg
