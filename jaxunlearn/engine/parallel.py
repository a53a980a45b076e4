"""Data-parallel unlearning and training: one batch split across devices, one model copy each.

What this does, in plain words: every device holds a full, identical copy of the model,
of the optimiser state (the IGS multiplier λ included) and of the frozen teacher; each
step's batch is cut into equal slices along its first axis, one slice per device. Each
device runs the forward and backward pass on its slice, and the compiler (XLA's SPMD
partitioner) adds the communication that combines the slices' contributions into the
gradient, loss and BatchNorm statistics of the *whole* batch. Every device then applies
the same update, so the copies stay identical. There are no hand-written collectives
(no ``pmap``, ``psum`` or ``shard_map``): the steps are the ordinary jitted steps of
:mod:`jaxunlearn.unlearning_steps` and :mod:`jaxunlearn.steps`, called with arrays whose
``.sharding`` says where they live. Because whole-batch quantities are formed exactly
(only the order of floating-point additions changes), a run on N devices gives the same
parameters and λ as a run on one device up to float rounding — BatchNorm included, whose
batch statistics are those of the whole batch, not of a device's slice.

Layout (a one-axis :class:`jax.sharding.Mesh` named ``"data"``):

* batch leaves: ``NamedSharding(mesh, P("data"))`` — first axis split across devices, so
  every batch size (``n_retain`` and ``n_forget`` of an unlearning step, ``batch_size`` of
  a training step) must be divisible by the number of devices;
* params, model state, optimiser state, teacher: ``NamedSharding(mesh, P())`` — replicated;
* step outputs are constrained to stay replicated (:func:`data_parallel`).

Single host, any number of local devices::

    from jaxunlearn import parallel
    mesh = parallel.make_mesh()                 # all devices, axis "data"
    result = run_method(cfg, fm, params, state, dataset, forget_set, mesh=mesh)
    metrics = pretraining.train(config, workdir, mesh=mesh)

To try it on a CPU-only machine, fake several devices *before* JAX starts::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu python my_script.py

(The fake devices share the machine's cores: this checks correctness, not speed.)

Multi-host (several processes or machines, each with its local devices): every process
runs the *same* script, and only its rank differs. It calls :func:`jax.distributed.initialize`
first, before anything else touches JAX, then builds the mesh over the *global* device
list — :func:`make_mesh` does, since ``jax.devices()`` lists every process's devices once
the runtime is started — and passes it to ``run_method``. ``examples/multihost.py`` is
that script, and ``tests/engine/test_multihost.py`` runs it as two processes on localhost
(CPU collectives, one device each) and checks the parameters and λ against one process::

    python examples/multihost.py --processes 2 --process-id 0 --coordinator localhost:12355 &
    python examples/multihost.py --processes 2 --process-id 1 --coordinator localhost:12355

On several machines pass host 0's address as the coordinator; on Slurm or TPU pods (or
with ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID`` set) a bare
``jax.distributed.initialize()`` finds its peers itself. Each process computes the same
global batch (batches are a pure function of seed and step, see
:func:`jaxunlearn.data.unlearning_batch`) and :func:`shard_batch` gives each local device
its slice of it, so no process needs another's data. ``run_method`` without a
checkpointer writes no files; its result's params are replicated global arrays, so
``jax.device_get(result.params)`` gives every process a local copy to evaluate or save
(from process 0 only). Not tested here: a lost peer mid-run (JAX's distributed runtime
then fails the survivors when its heartbeat times out) and multi-process checkpoints;
``training.train(..., mesh=...)`` on several processes writes metrics files from each, so
give each its own ``workdir``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxunlearn.errors import ConfigError

__all__ = [
  "make_mesh",
  "shard_batch",
  "replicate",
  "batch_sharding",
  "replicated_sharding",
  "check_divisible",
  "data_parallel",
  "num_devices",
  "fsdp_sharding",
  "shard_fully",
  "fully_sharded",
]


def make_mesh(
  num_devices: int | None = None,
  axis: str = "data",
  devices: Sequence[jax.Device] | None = None,
) -> Mesh:
  """A one-axis device mesh for data parallelism.

  Uses the first ``num_devices`` of ``devices`` (default: all of ``jax.devices()``, which
  on a multi-host run lists every host's devices). The axis type is ``Auto``, so jitted
  code sees ordinary arrays and the compiler places the communication.

  Example (one CPU device is always there):
    >>> mesh = make_mesh(1)
    >>> mesh.shape["data"], mesh.axis_names
    (1, ('data',))
  """
  devices = list(jax.devices() if devices is None else devices)
  if num_devices is None:
    num_devices = len(devices)
  if not 1 <= num_devices <= len(devices):
    raise ConfigError(
      f"num_devices must be between 1 and {len(devices)} (the devices available), got {num_devices}"
    )
  return Mesh(np.array(devices[:num_devices]), (axis,), axis_types=(AxisType.Auto,))


def num_devices(mesh: Mesh) -> int:
  """Number of devices a batch is split across (all of the mesh's devices)."""
  return int(mesh.devices.size)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """First axis split over every mesh axis: ``P("data")`` on a one-axis mesh."""
  names = mesh.axis_names
  return NamedSharding(mesh, P(names[0] if len(names) == 1 else tuple(names)))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh: ``P()``."""
  return NamedSharding(mesh, P())


def check_divisible(size: int, mesh: Mesh, what: str = "batch size") -> None:
  """Raises a one-line ``ValueError`` unless ``size`` splits evenly over the mesh.

  Examples:
    >>> check_divisible(64, make_mesh(1), "n_retain")   # anything divides by 1
  """
  n = num_devices(mesh)
  if int(size) % n:
    raise ConfigError(
      f"{what} {size} is not divisible by the {n} devices of the mesh; "
      f"choose a multiple of {n} (e.g. {max(n, int(size) // n * n)}) "
      "or fewer devices"
    )


def _put(x, sharding: NamedSharding):
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  # Multi-host: every host holds the same full value; each device takes its own slice.
  value = np.asarray(x)
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Places every leaf of ``batch`` split along its first axis across the mesh's devices.

  ``batch`` is the *global* batch (numpy or JAX arrays, any pytree); every leaf's first
  dimension must be divisible by the number of devices (``ValueError`` otherwise). On a
  multi-host run every host passes the same global batch and keeps only its devices' slices.

  Examples:
    >>> import numpy as np
    >>> b = shard_batch({"x": np.zeros((8, 3)), "y": np.arange(8)}, make_mesh(1))
    >>> b["x"].shape, b["x"].sharding.spec == P("data")
    ((8, 3), True)
    >>> [shard.data.shape for shard in b["x"].addressable_shards]  # one slice per device
    [(8, 3)]
  """
  sharding = batch_sharding(mesh)

  def put(path, x):
    shape = np.shape(x)
    if not shape:
      raise ValueError(
        f"batch leaf {jax.tree_util.keystr(path)} is a scalar; batch leaves "
        "need a leading batch axis"
      )
    check_divisible(shape[0], mesh, f"batch size of {jax.tree_util.keystr(path) or 'the batch'}")
    return _put(x, sharding)

  return jax.tree_util.tree_map_with_path(put, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a full copy of every leaf of ``tree`` on every device of the mesh.

  Use it for parameters, model state, optimiser state (IGS's λ lives there) and the
  teacher. On one host, leaves already replicated on this mesh are returned without a copy.

  Examples:
    >>> import jax.numpy as jnp
    >>> p = replicate({"w": jnp.ones((2, 2))}, make_mesh(1))
    >>> p["w"].sharding.is_fully_replicated
    True
  """
  return jax.tree.map(lambda x: _put(x, replicated_sharding(mesh)), tree)


@functools.lru_cache(maxsize=64)
def data_parallel(step_fn: Callable, mesh: Mesh) -> Callable:
  """``step_fn`` (a jitted step) with every output constrained to stay replicated.

  Inputs keep the shardings they arrive with (replicated state, sharded batch); the
  outputs — new params, model state, optimiser state and logged scalars — come back as
  full copies on every device of ``mesh``, ready for the next step. Compiles once per
  (step, mesh) and input shapes; the result is cached.

  Examples:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> mesh = make_mesh(1)
    >>> step = data_parallel(jax.jit(lambda w, x: (w - 0.1 * x.mean(0), x.sum())), mesh)
    >>> w, s = step(replicate(jnp.zeros(3), mesh), shard_batch(np.ones((4, 3)), mesh))
    >>> w.sharding.is_fully_replicated, float(s)
    (True, 12.0)
  """
  return jax.jit(step_fn, out_shardings=replicated_sharding(mesh))


def fsdp_sharding(shape: Sequence[int], mesh: Mesh) -> NamedSharding:
  """Where fully sharded data parallelism (ZeRO-3, FSDP) keeps a leaf of ``shape``: split
  along its largest axis that the mesh's device count divides (the first such axis on a
  tie), replicated when none does (scalars such as IGS's λ, odd sizes).

  A pure function of the shape, so a step's new params land where the old ones were.

  Examples:
    >>> mesh = make_mesh(1)
    >>> fsdp_sharding((64, 32), mesh).is_fully_replicated  # one device: nothing to split
    True
  """
  n = num_devices(mesh)
  axes = [i for i, d in enumerate(shape) if d >= n and d % n == 0]
  if n == 1 or not axes:
    return replicated_sharding(mesh)
  names = mesh.axis_names
  split = max(axes, key=lambda i: (shape[i], -i))
  spec = [None] * len(shape)
  spec[split] = names[0] if len(names) == 1 else tuple(names)
  return NamedSharding(mesh, P(*spec))


def shard_fully(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf of ``tree`` as :func:`fsdp_sharding` says: each device holds about
  ``1/N`` of the parameters, model state, optimiser state and teacher instead of a copy.

  Examples:
    >>> import jax.numpy as jnp
    >>> p = shard_fully({"w": jnp.ones((8, 4))}, make_mesh(1))
    >>> p["w"].shape, len(p["w"].addressable_shards)
    ((8, 4), 1)
  """
  return jax.tree.map(lambda x: _put(x, fsdp_sharding(np.shape(x), mesh)), tree)


@functools.lru_cache(maxsize=64)
def fully_sharded(step_fn: Callable, mesh: Mesh) -> Callable:
  """``step_fn`` (a jitted step) with every output kept where :func:`fsdp_sharding` puts
  it: fully sharded data parallelism. The batch arrives split along its first axis (as
  for :func:`data_parallel`) and the params split across devices; XLA's SPMD partitioner
  gathers each weight where the step needs it and reduce-scatters the gradients, so the
  step computes the whole batch's update, as on one device, up to the order of the sums.

  Examples:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> mesh = make_mesh(1)
    >>> step = fully_sharded(jax.jit(lambda w, x: (w - 0.1 * x.mean(0), x.sum())), mesh)
    >>> w, s = step(shard_fully(jnp.zeros(4), mesh), shard_batch(np.ones((4, 4)), mesh))
    >>> w.shape, float(s)
    ((4,), 16.0)
  """

  def step(*args):
    out = step_fn(*args)
    place = lambda x: jax.lax.with_sharding_constraint(x, fsdp_sharding(x.shape, mesh))
    return jax.tree.map(place, out)

  return jax.jit(step)


# What a collective reports when a peer process died: its TCP connection (Gloo's pairs on
# CPU), or the coordination service's heartbeat. Seen with two jax.distributed processes
# on localhost after a SIGKILL of one: "Gloo all-reduce failed: ... Connection reset by
# peer" on the next step of the other, at once (tests/engine/test_multihost.py). A failed
# collective without one of these (e.g. a bad NCCL setup) is not called a lost peer.
_LOST_PEER_SIGNS = ("Connection reset by peer", "Connection closed by peer", "heartbeat timeout")
_LOST_PEER_SIGNS += ("Broken pipe",)


def lost_peer(error: BaseException) -> str | None:
  """A one-line message naming the lost peer when ``error`` is a collective that failed
  because another process of this ``jax.distributed`` run is gone; ``None`` otherwise.

  Examples:
    >>> lost_peer(ValueError("shapes differ")) is None
    True
    >>> lost_peer(RuntimeError("Gloo all-reduce failed: Connection reset by peer")).split(";")[1]
    ' rerun every process with --resume to continue from the last checkpoint'
  """
  text = str(error)
  if not any(sign in text for sign in _LOST_PEER_SIGNS):
    return None
  me, n = jax.process_index(), jax.process_count()
  others = [i for i in range(n) if i != me]
  who = f"process {others[0]}" if len(others) == 1 else f"one of processes {others or '?'}"
  line = next(line for line in text.splitlines() if any(s in line for s in _LOST_PEER_SIGNS))
  line = line.strip() if len(line) <= 200 else "…" + line.strip()[-200:]  # ends with the cause
  return (
    f"process {me} of {n} lost {who}: a collective failed ({line}); rerun every "
    "process with --resume to continue from the last checkpoint"
  )
