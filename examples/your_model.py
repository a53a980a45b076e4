import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_wine

import jaxunlearn

x, y = load_wine(return_X_y=True)  # tabular: 178 rows × 13 features, 3 classes, offline
x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
order = np.random.default_rng(0).permutation(len(y))
x, y = x[order], y[order]
x_train, y_train, val, test = x[:110], y[:110], (x[110:140], y[110:140]), (x[140:], y[140:])


def fit(apply_fn, params, x, y, steps=300):  # your own training loop (Adam, full batch)
  tx = optax.adam(1e-2)
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, x), y).mean()
  step = jax.jit(lambda p, s: (lambda g: tx.update(g, s, p))(jax.grad(loss)(p)))
  state = tx.init(params)
  for _ in range(steps):
    updates, state = step(params, state)
    params = optax.apply_updates(params, updates)
  return params


# A linen model. Request 1 forgets class 0 (TA, MIA and Loss AUC then cover classes 1
# and 2) and compares with your own model retrained without it; request 2 forgets 10 rows.
model = nn.Sequential([nn.Dense(32), nn.relu, nn.Dense(3)])
variables = fit(model.apply, model.init(jax.random.key(0), x_train[:1]), x_train, y_train)
keep = y_train != 0
retrained = fit(
  model.apply, model.init(jax.random.key(0), x_train[:1]), x_train[keep], y_train[keep]
)
run = dict(x=x_train, y=y_train, val=val, test=test)  # the default budget: 100 steps of 80 rows
first = jaxunlearn.unlearn(model, variables, **run, forget="class:0", retrained=(model, retrained))
second = jaxunlearn.unlearn(model, None, **run, forget=np.flatnonzero(keep)[:10], previous=first)
print("linen, class 0:", first.summary())
print("linen, + 10 rows:", second.summary())
m = jaxunlearn.evaluate(model, retrained, x_train, y_train, forget="class:0", test=test)
print("retrained:", ", ".join(f"{k} {v:.1f}" for k, v in m.items()))

# An NNX module: trained through its pure-dict params, unlearned, and back as a module.
net = nnx.Sequential(
  nnx.Linear(13, 32, rngs=nnx.Rngs(0)), nnx.relu, nnx.Linear(32, 3, rngs=nnx.Rngs(1))
)
graphdef, params, rest = nnx.split(net, nnx.Param, ...)
nnx.update(net, fit(lambda p, x: nnx.merge(graphdef, p, rest)(x), params, x_train, y_train))
report = jaxunlearn.unlearn(net, None, **run, forget="class:0")
print("nnx, class 0:", report.summary(), "| model:", type(report.model).__name__)

# A bare apply function (multinomial logistic regression), forgetting a random 10 %.
apply_fn = lambda p, x: x @ p["w"] + p["b"]
params = fit(apply_fn, {"w": jnp.zeros((13, 3)), "b": jnp.zeros(3)}, x_train, y_train)
report = jaxunlearn.unlearn(apply_fn, params, **run, forget="random:0.1")
print("apply_fn, random 10 %:", report.summary())
