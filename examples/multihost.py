"""Data-parallel unlearning over several processes (hosts): the multi-host recipe, tested.

Every process runs this same script; only ``--process-id`` differs. It starts JAX's
distributed runtime first (before anything else touches JAX), builds one mesh over the
devices of every process, and runs anchored IGS on digits with each step's batch split
across all of them (:mod:`jaxunlearn.engine.parallel`). Process 0 writes the final
parameters and λ's trajectory to ``--out`` (an ``.npz``). ``tests/engine/test_multihost.py``
starts two processes on localhost with CPU collectives and checks them against one.

On one machine (two processes, one CPU device each)::

    python examples/multihost.py --processes 2 --process-id 0 --coordinator localhost:12355 &
    python examples/multihost.py --processes 2 --process-id 1 --coordinator localhost:12355

On several hosts pass host 0's address as ``--coordinator`` (``10.0.0.1:12355``) and each
host's rank; under Slurm or on a TPU pod leave ``--coordinator`` out and JAX finds its
peers itself (``jax.distributed.initialize()``). Without ``--processes`` it runs alone
(the reference a multi-process run must match).

With ``--workdir`` every process checkpoints into it every ``--checkpoint-every`` steps
(Orbax's multi-process checkpointing: one directory that every process can see, e.g. a
shared file system across hosts). If a process dies, the others stop at their next step
with one line naming the lost peer (exit status 3); rerunning every process with
``--resume`` continues from the last checkpoint and ends where an uninterrupted run ends.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys


def parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--processes", type=int, default=1, help="number of processes (1: alone)")
  p.add_argument("--process-id", type=int, default=0, help="this process's rank")
  p.add_argument("--coordinator", default=None, help="host:port of process 0's coordinator")
  p.add_argument("--steps", type=int, default=30, help="unlearning steps")
  p.add_argument("--out", default="multihost.npz", help="process 0 writes params and λ here")
  p.add_argument("--workdir", default=None, help="checkpoint here (every process: the same one)")
  p.add_argument("--checkpoint-every", type=int, default=10, help="steps between checkpoints")
  p.add_argument("--resume", action="store_true", help="continue from --workdir's checkpoint")
  return p.parse_args(argv)


def main(argv=None) -> None:
  args = parse(argv)
  import jax  # noqa: PLC0415 - the runtime starts before anything else uses JAX

  if args.processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives
    jax.distributed.initialize(
      coordinator_address=args.coordinator,
      num_processes=args.processes,
      process_id=args.process_id,
      initialization_timeout=120,
      heartbeat_timeout_seconds=20,  # a dead peer is declared dead within 20 s, not 100
    )
  import numpy as np  # noqa: PLC0415

  from jaxunlearn import data  # noqa: PLC0415
  from jaxunlearn.engine import checkpoint, parallel, training  # noqa: PLC0415
  from jaxunlearn.engine.config import TrainConfig  # noqa: PLC0415
  from jaxunlearn.engine.methods import make_config  # noqa: PLC0415
  from jaxunlearn.engine.unlearning import run_method  # noqa: PLC0415

  ds = data.load_dataset("digits")  # the same rows on every process
  fm, params, state = training.build_model(TrainConfig(model_kwargs={"hidden": (32,)}), ds)
  forget = data.make_forget_set(ds, "class:0")
  # An untrained model's retain loss falls fast; demanding it fall by 0.5 makes λ rise,
  # so the dual variable is part of what must agree.
  cfg = make_config("igs", steps=args.steps, n_retain=32, n_forget=8, tolerance=-0.5)
  mesh = parallel.make_mesh() if args.processes > 1 else None  # every process's devices
  saving = {}
  if args.workdir:
    saving = dict(
      checkpointer=checkpoint.Checkpointer(pathlib.Path(args.workdir) / "checkpoints"),
      checkpoint_every=args.checkpoint_every,
      resume=args.resume,
    )
  try:
    result = run_method(cfg, fm, params, state, ds, forget, mesh=mesh, progress=False, **saving)
  except Exception as e:  # noqa: BLE001 - only a lost peer is turned into a message
    message = parallel.lost_peer(e) if args.processes > 1 else None
    if message is None:
      raise
    print(f"multihost: {message}", file=sys.stderr, flush=True)
    # The distributed runtime cannot shut down with a peer gone (its shutdown barrier
    # aborts the process with a stack trace): leave without it.
    os._exit(3)
  if saving:
    saving["checkpointer"].close()
  if jax.process_index() == 0:
    flat = {
      jax.tree_util.keystr(k): np.asarray(v)
      for k, v in jax.tree_util.tree_leaves_with_path(jax.device_get(result.params))
    }
    lam = result.history["multiplier"]  # λ after every step
    np.savez(pathlib.Path(args.out), multiplier=lam, **flat)
    print(f"{jax.process_count()} processes, {len(jax.devices())} devices: λ = {lam[-1]:.6f}")


if __name__ == "__main__":
  main()
