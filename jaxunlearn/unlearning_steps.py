"""Jitted unlearning steps: one builder per step shape, shared by every method.

A step maps ``(params, model_state, opt_state, batch, teacher, step_index)`` to the
new ``(params, model_state, opt_state)`` and a dict of logged scalars. The batch holds
``retain_image, retain_label, forget_image, forget_label`` (the random target) and
``forget_true_label``. Retain and forget examples go through separate forward passes
(the *split* layout); BatchNorm statistics are updated from the retain pass only, and
the IGS re-evaluation pass never keeps them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import jaxunlearn
from jaxunlearn import objectives
from jaxunlearn.methods import Method, UnlearnConfig, forget_objective
from jaxunlearn.models import FunctionalModel


def _outputs(fm, method, cfg, params, model_state, batch, teacher, step_index):
  r_logits, new_state = fm.apply(params, model_state, batch["retain_image"], train=True)
  f_logits, _ = fm.apply(params, model_state, batch["forget_image"], train=True)
  out = dict(retain_logits=r_logits, forget_logits=f_logits, retain_label=batch["retain_label"],
             forget_label=batch["forget_label"], forget_true_label=batch["forget_true_label"],
             step=step_index, progress=step_index / cfg.steps, params=params)
  if method.needs_teacher:
    t_params, t_state = teacher
    out["teacher_retain_logits"] = fm.apply(t_params, t_state, batch["retain_image"],
                                            train=False)[0]
    out["teacher_forget_logits"] = fm.apply(t_params, t_state, batch["forget_image"],
                                            train=False)[0]
  return out, new_state


def _all_finite(tree):
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_unlearn_step(fm: FunctionalModel, method: Method, cfg: UnlearnConfig,
                      tx: optax.GradientTransformation):
  """Returns the jitted step of ``method`` (shape single, weighted or aggregated)."""

  def retain_loss_fn(model_state, batch):
    def fn(p):  # L_r on the same batch; the new BN statistics are discarded
      logits, _ = fm.apply(p, model_state, batch["retain_image"], train=True)
      return objectives.cross_entropy(logits, batch["retain_label"])
    return fn

  def forget_loss_fn(model_state, batch):
    def fn(p):
      logits, _ = fm.apply(p, model_state, batch["forget_image"], train=True)
      return forget_objective(dict(forget_logits=logits, forget_label=batch["forget_label"],
                                   forget_true_label=batch["forget_true_label"]), cfg)
    return fn

  def step(params, model_state, opt_state, batch, teacher, step_index):
    logs = {}
    old_opt = opt_state
    if method.shape == "single":
      def loss_fn(p):
        out, new_state = _outputs(fm, method, cfg, p, model_state, batch, teacher, step_index)
        return method.loss(out, cfg), (out, new_state)
      (loss, (out, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      logs["loss"] = loss
      logs["retain_loss"] = objectives.cross_entropy(out["retain_logits"], out["retain_label"])
      logs["forget_loss"] = forget_objective(out, cfg)
    elif method.shape == "weighted":
      def loss_fn(p):
        out, new_state = _outputs(fm, method, cfg, p, model_state, batch, teacher, step_index)
        l_r = objectives.cross_entropy(out["retain_logits"], out["retain_label"])
        l_f = forget_objective(out, cfg)
        return jaxunlearn.scalarized_loss(opt_state, l_r, l_f), (l_r, l_f, new_state)
      (_, (l_r, l_f, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      r_fn = retain_loss_fn(model_state, batch)
      if method.name == "famo":
        f_fn = forget_loss_fn(model_state, batch)
        kwargs = dict(losses=jnp.stack([l_r, l_f]),
                      losses_fn=lambda p: jnp.stack([r_fn(p), f_fn(p)]))
      elif method.name == "igs":
        kwargs = dict(retain_loss=l_r, retain_loss_fn=r_fn)
      else:
        kwargs = dict(retain_loss=l_r)
      updates, opt_state = tx.update(grads, opt_state, params, **kwargs)
      logs.update(retain_loss=l_r, forget_loss=l_f)
      state = jaxunlearn.find_weighting_state(opt_state)
      if hasattr(state, "decrease"):
        logs["retain_decrease"] = state.decrease
      logs["weights"] = jnp.stack(jaxunlearn.loss_weights(opt_state))
    else:  # aggregated: two objectives, two backprops
      def r_with_state(p):
        logits, new_state = fm.apply(p, model_state, batch["retain_image"], train=True)
        return objectives.cross_entropy(logits, batch["retain_label"]), new_state
      def f_with_aux(p):
        return forget_loss_fn(model_state, batch)(p), None
      losses, auxes, grads = jaxunlearn.objective_gradients((r_with_state, f_with_aux), params,
                                                            has_aux=True)
      new_state = auxes[0]
      updates, opt_state = tx.update(grads, opt_state, params)
      logs.update(retain_loss=losses[0], forget_loss=losses[1])
    if method.multiplier:
      logs["multiplier"] = jaxunlearn.multiplier(opt_state)
    new_params = optax.apply_updates(params, updates)
    # A non-finite loss or update skips the step: params, model state, optimiser state
    # (λ included) stay as they were, and the skip is logged.
    ok = jnp.logical_and(_all_finite((logs["retain_loss"], logs["forget_loss"])),
                         _all_finite(updates))
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
    logs["skipped"] = jnp.logical_not(ok)
    return (keep(new_params, params), keep(new_state, model_state), keep(opt_state, old_opt),
            logs)

  return jax.jit(step)
