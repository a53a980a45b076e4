import flax.linen as nn
import jax
import numpy as np
import optax
from sklearn.datasets import load_breast_cancer

import jaxunlearn

x, y = load_breast_cancer(return_X_y=True)  # tabular: 569 rows × 30 features, offline
x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
x_train, y_train, x_test, y_test = x[:450], y[:450], x[450:], y[450:]
model = nn.Sequential([nn.Dense(32), nn.relu, nn.Dense(2)])  # your linen model
variables = model.init(jax.random.key(0), x_train[:1])
tx = optax.adam(1e-2)
loss = lambda v: optax.softmax_cross_entropy_with_integer_labels(
  model.apply(v, x_train), y_train
).mean()
grad_step = jax.jit(lambda v, s: (lambda g: tx.update(g, s, v))(jax.grad(loss)(v)))
state = tx.init(variables)
for _ in range(200):  # your own training loop
  updates, state = grad_step(variables, state)
  variables = optax.apply_updates(variables, updates)

# A deletion request for rows 0..44 (IGS), then a second one for rows 45..89.
run = dict(model=model, params=variables, x=x_train, y=y_train, test=(x_test, y_test), epochs=5)
first = jaxunlearn.unlearn(**run, forget=np.arange(45))
second = jaxunlearn.unlearn(**run, forget=np.arange(45, 90), previous=first)
print("request 1:", first.summary())
print("request 2:", second.summary(), f"({len(second.forgotten)} rows forgotten)")
