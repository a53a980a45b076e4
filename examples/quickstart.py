import jax
import jax.numpy as jnp
import optax
from flax import nnx
from sklearn.datasets import load_digits

import jaxunlearn

x, y = load_digits(return_X_y=True)  # 1,797 real 8×8 digits, shipped offline
x, y = jnp.asarray(x / 16.0, jnp.float32), jnp.asarray(y)


class MLP(nnx.Module):
  def __init__(self, rngs):
    self.hidden = nnx.Linear(64, 128, rngs=rngs)
    self.out = nnx.Linear(128, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.hidden(x)))


def cross_entropy(model, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


# 1. The original model, trained on every digit.
model = MLP(nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)


@nnx.jit
def train_step(model, optimizer):
  loss, grads = nnx.value_and_grad(cross_entropy)(model, x, y)
  optimizer.update(model, grads)
  return loss


for _ in range(150):
  train_step(model, optimizer)

# 2. Forget every "0": push its predictions to random wrong labels (L_f) while
#    implicit gradient surgery keeps the loss on the other digits (L_r) from rising.
forget = y == 0
x_f, y_f, x_r, y_r = x[forget], y[forget], x[~forget], y[~forget]
graphdef, params = nnx.split(model)
retain_loss = lambda p: cross_entropy(nnx.merge(graphdef, p), x_r, y_r)

# The default variant keeps L_r(θ) ≤ L_r(θ_0) + 0.02 on each batch; variant="paper" is the
# paper's exact update.
tx = jaxunlearn.implicit_gradient_surgery(optax.sgd(0.01, momentum=0.9))
state = tx.init(params)


@jax.jit
def unlearn_step(params, state, key):
  wrong = (y_f + jax.random.randint(key, y_f.shape, 1, 10)) % 10  # never the true label

  def objective(p):  # S = (λ·L_r + L_f)/(1 + λ), built from the state
    l_r = retain_loss(p)
    l_f = cross_entropy(nnx.merge(graphdef, p), x_f, wrong)
    return jaxunlearn.scalarized_loss(state, l_r, l_f), l_r

  (_, l_r), grads = jax.value_and_grad(objective, has_aux=True)(params)  # one backprop
  updates, state = tx.update(grads, state, params, retain_loss=l_r, retain_loss_fn=retain_loss)
  return optax.apply_updates(params, updates), state


for key in jax.random.split(jax.random.key(1), 100):
  params, state = unlearn_step(params, state, key)

unlearned = nnx.merge(graphdef, params)
accuracy = lambda x, y: float(jnp.mean(unlearned(x).argmax(-1) == y) * 100)
print(
  f"forget-set accuracy {accuracy(x_f, y_f):.1f}%  retain accuracy {accuracy(x_r, y_r):.1f}%  "
  f"λ = {float(jaxunlearn.multiplier(state)):.3f}"
)
