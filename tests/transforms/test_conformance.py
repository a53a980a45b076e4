"""One conformance suite every transformation of ours must pass (after optax's contrib suite).

jit (traced once); inside optax.chain with clipping and sgd/adam; under
inject_hyperparams (a hyperparameter changed without re-jit); with MultiSteps;
through nnx.Optimizer; state structure, shapes and dtypes stable; many-leaf params.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxunlearn
from jaxunlearn.transforms import aggregators


def make_params(seed=0):
  """A 3-layer MLP as a nested dict: 6 leaves of several shapes."""
  k = jax.random.split(jax.random.key(seed), 3)
  sizes = [(5, 16), (16, 8), (8, 3)]
  return {
    f"layer{i}": {"kernel": jax.random.normal(k[i], s) * 0.3, "bias": jnp.zeros(s[1])}
    for i, s in enumerate(sizes)
  }


X = jax.random.normal(jax.random.key(1), (32, 5))
Y_R = jax.random.randint(jax.random.key(2), (16,), 0, 3)
Y_F = jax.random.randint(jax.random.key(3), (16,), 0, 3)


def logits(p, x):
  for i in range(3):
    x = x @ p[f"layer{i}"]["kernel"] + p[f"layer{i}"]["bias"]
    if i < 2:
      x = jnp.tanh(x)
  return x


def retain_loss(p):
  return optax.softmax_cross_entropy_with_integer_labels(logits(p, X[:16]), Y_R).mean()


def forget_loss(p):
  return optax.softmax_cross_entropy_with_integer_labels(logits(p, X[16:]), Y_F).mean()


def both_losses(p):
  return jnp.stack([retain_loss(p), forget_loss(p)])


# Weighting transformations: the step differentiates the scalarised loss once.
# functools.partial keeps the signature that optax.inject_hyperparams inspects.
WEIGHTED = {
  "igs-reevaluate": functools.partial(jaxunlearn.implicit_gradient_surgery, signal="reevaluate"),
  "igs-jvp": functools.partial(jaxunlearn.implicit_gradient_surgery, signal="jvp"),
  "igs-consecutive": functools.partial(jaxunlearn.implicit_gradient_surgery, signal="consecutive"),
  "famo": jaxunlearn.famo,
  "pdu": functools.partial(jaxunlearn.primal_dual, threshold=0.5),
}
# Aggregators: the step computes per-objective gradients.
AGGREGATORS = {
  "explicit": jaxunlearn.explicit_gradient_surgery,
  "mgda": aggregators.mgda,
  "pcgrad": aggregators.pcgrad,
  "cagrad": aggregators.cagrad,
  "linear": lambda: aggregators.linear([1.0, 1.0]),
}
INNERS = {
  "sgd": lambda: optax.sgd(0.05, momentum=0.9),
  "clip-sgd": lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.05)),
}


def extra_kwargs(name, params):
  if name.startswith("igs"):
    return dict(retain_loss=retain_loss(params), retain_loss_fn=retain_loss)
  if name == "famo":
    return dict(losses=both_losses(params), losses_fn=both_losses)
  return dict(retain_loss=retain_loss(params))


def weighted_step(name, tx, traces):
  @jax.jit
  def step(params, state):
    traces.append(1)
    grads = jax.grad(lambda p: jaxunlearn.scalarized_loss(state, retain_loss(p), forget_loss(p)))(
      params
    )
    updates, state = tx.update(grads, state, params, **extra_kwargs(name, params))
    return optax.apply_updates(params, updates), state

  return step


def aggregated_step(tx, traces):
  @jax.jit
  def step(params, state):
    traces.append(1)
    _, grads = jaxunlearn.objective_gradients((retain_loss, forget_loss), params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return step


def signature(tree):
  return jax.tree.structure(tree), [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]


def run(step, params, state, n=6):
  sig = signature(state)
  for _ in range(n):
    params, state = step(params, state)
    assert signature(state) == sig
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((params, state)))
  return params, state


@pytest.mark.parametrize("inner", INNERS)
@pytest.mark.parametrize("name", WEIGHTED)
def test_weighted_jit_chain_and_stable_state(name, inner):
  tx = WEIGHTED[name](INNERS[inner]())
  params = make_params()
  traces = []
  new_params, _ = run(weighted_step(name, tx, traces), params, tx.init(params))
  assert len(traces) == 1
  assert float(forget_loss(new_params)) < float(forget_loss(params))


@pytest.mark.parametrize("name", WEIGHTED)
def test_weighted_behind_clipping_in_outer_chain(name):
  params = make_params()
  outer = optax.chain(
    optax.clip_by_global_norm(0.5), WEIGHTED[name](optax.adam(1e-2))
  )  # adam inner
  run(weighted_step(name, outer, []), params, outer.init(params))


@pytest.mark.parametrize("inner", INNERS)
@pytest.mark.parametrize("name", AGGREGATORS)
def test_aggregator_jit_chain_and_stable_state(name, inner):
  tx = optax.chain(AGGREGATORS[name](), INNERS[inner]())
  params = make_params()
  traces = []
  new_params, _ = run(aggregated_step(tx, traces), params, tx.init(params))
  assert len(traces) == 1
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new_params, params)
  assert max(jax.tree.leaves(moved)) > 0


@pytest.mark.parametrize(
  "name,hyper,values",
  [
    ("igs-reevaluate", "tolerance", (0.5, -0.5)),
    ("igs-jvp", "tolerance", (0.5, -0.5)),
    ("igs-consecutive", "tolerance", (0.5, -0.5)),
    ("famo", "learning_rate", (0.025, 0.5)),
    ("pdu", "dual_learning_rate", (0.1, 2.0)),
  ],
)
def test_inject_hyperparams_changes_without_rejit(name, hyper, values):
  factory = WEIGHTED[name]
  # famo's num_objectives fixes array shapes, so it must stay static.
  static = ("inner", "num_objectives") if name == "famo" else ("inner",)
  tx = optax.inject_hyperparams(factory, static_args=static)(
    inner=optax.sgd(0.05), **{hyper: values[0]}
  )
  params = make_params()
  traces = []
  step = weighted_step(name, tx, traces)
  finals = []
  for value in values:
    state = tx.init(params)
    # Same dtype and weak-type as the injected value, so the compiled step is reused.
    state.hyperparams[hyper] = jnp.full_like(state.hyperparams[hyper], value)
    _, state = run(step, params, state)
    finals.append(np.asarray(jaxunlearn.loss_weights(state)))
  assert len(traces) == 1  # the second value reused the compiled step
  assert not np.allclose(finals[0], finals[1])  # and it did change the behaviour


@pytest.mark.parametrize("name", WEIGHTED)
def test_weighted_with_multisteps(name):
  tx = optax.MultiSteps(WEIGHTED[name](optax.sgd(0.05)), every_k_schedule=3)
  params = make_params()
  new_params, state = run(weighted_step(name, tx, []), params, tx.init(params), n=6)
  inner_state = state.inner_opt_state
  assert int(inner_state.count) == 2  # two real updates out of six micro-steps
  assert float(forget_loss(new_params)) < float(forget_loss(params))


@pytest.mark.parametrize("name", AGGREGATORS)
def test_aggregator_with_multisteps_inner(name):
  tx = optax.chain(AGGREGATORS[name](), optax.MultiSteps(optax.sgd(0.05), every_k_schedule=2))
  params = make_params()
  run(aggregated_step(tx, []), params, tx.init(params), n=4)


class MLP(nnx.Module):
  def __init__(self, rngs):
    self.l1 = nnx.Linear(5, 16, rngs=rngs)
    self.l2 = nnx.Linear(16, 3, rngs=rngs)

  def __call__(self, x):
    return self.l2(jnp.tanh(self.l1(x)))


def nnx_losses(model):
  ce = optax.softmax_cross_entropy_with_integer_labels
  return ce(model(X[:16]), Y_R).mean(), ce(model(X[16:]), Y_F).mean()


@pytest.mark.parametrize("name", WEIGHTED)
def test_weighted_through_nnx_optimizer(name):
  model = MLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, WEIGHTED[name](optax.sgd(0.05)), wrt=nnx.Param)
  graphdef, _ = nnx.split(model)

  def pure_losses(params):  # L_r and L_f at a params pytree, for the re-evaluation pass
    return jnp.stack(nnx_losses(nnx.merge(graphdef, params)))

  @nnx.jit
  def step(model, optimizer):
    def objective(m):
      l_r, l_f = nnx_losses(m)
      return jaxunlearn.scalarized_loss(optimizer.opt_state, l_r, l_f), (l_r, l_f)

    (_, (l_r, l_f)), grads = nnx.value_and_grad(objective, has_aux=True)(model)
    if name.startswith("igs"):
      kw = dict(retain_loss=l_r, retain_loss_fn=lambda p: pure_losses(p)[0])
    elif name == "famo":
      kw = dict(losses=jnp.stack([l_r, l_f]), losses_fn=pure_losses)
    else:
      kw = dict(retain_loss=l_r)
    optimizer.update(model, grads, **kw)
    return l_f

  first = float(step(model, optimizer))
  for _ in range(5):
    last = float(step(model, optimizer))
  assert last < first
  jaxunlearn.loss_weights(optimizer.opt_state)  # readable from the nnx-wrapped state


def test_explicit_through_nnx_optimizer():
  model = MLP(nnx.Rngs(0))
  tx = optax.chain(jaxunlearn.explicit_gradient_surgery(), optax.sgd(0.05))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    loss = lambda i: lambda p: nnx_losses(nnx.merge(graphdef, p, rest))[i]
    losses, grads = jaxunlearn.objective_gradients((loss(0), loss(1)), params)
    optimizer.update(model, grads)
    return losses

  first = step(model, optimizer)
  for _ in range(5):
    last = step(model, optimizer)
  assert float(last[1]) < float(first[1])
