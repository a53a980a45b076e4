"""The run engine: configs, the method registry, jitted steps, loops, evaluation, checkpoints.

* :mod:`~jaxunlearn.engine.config` — :class:`TrainConfig`, :class:`UnlearnConfig`, overrides;
* :mod:`~jaxunlearn.engine.methods` — the registry of unlearning methods;
* :mod:`~jaxunlearn.engine.steps` — jitted train, predict and unlearning steps;
* :mod:`~jaxunlearn.engine.training` — pretraining / retraining loop, :func:`load_trained`;
* :mod:`~jaxunlearn.engine.unlearning` — the unlearning loops (:func:`run_method`, run_batch);
* :mod:`~jaxunlearn.engine.evaluation` — :func:`evaluate` (accuracies, UA/RA/TA/MIA);
* :mod:`~jaxunlearn.engine.checkpoint` — Orbax checkpoints (latest and best);
* :mod:`~jaxunlearn.engine.parallel` — data-parallel meshes;
* :mod:`~jaxunlearn.engine.records` — atomic JSON, workdir checks, machine info.
"""

from jaxunlearn.engine.config import TrainConfig, UnlearnConfig, override
from jaxunlearn.engine.evaluation import evaluate
from jaxunlearn.engine.methods import METHODS, get_method, make_config
from jaxunlearn.engine.training import TrainedModel, load_trained, train
from jaxunlearn.engine.unlearning import UnlearnResult, run_method

__all__ = [
  "METHODS",
  "TrainConfig",
  "TrainedModel",
  "UnlearnConfig",
  "UnlearnResult",
  "evaluate",
  "get_method",
  "load_trained",
  "make_config",
  "override",
  "run_method",
  "train",
]
