"""Train the original model, or retrain it without a forget set.

python -m experiments.pretrain --dataset digits --model mlp --workdir runs/original
python -m experiments.pretrain --dataset digits --workdir runs/retrain --retrain --forget class:0
python -m experiments.pretrain --config cifar10-resnet18 --workdir runs/c10   # accelerator
... --resume      # continue a killed run from its latest checkpoint
... --set epochs=5 --set learning_rate=0.01   # override any config key
"""

from __future__ import annotations

import dataclasses
import json

from experiments import configs, ddpm
from experiments.cli import FORGET_HELP, main_guard, parser
from jaxunlearn.engine.config import override
from jaxunlearn.engine.training import train
from jaxunlearn.errors import ConfigError
from jaxunlearn.nn.models import MODELS


def build_parser():
  p = parser(__doc__)
  p.add_argument(
    "--config",
    help=f"named recipe: {', '.join([*configs.PRETRAIN_CONFIGS, *ddpm.PRETRAIN_RECIPES])}",
  )
  p.add_argument(
    "--dataset", help="dataset name; unset: the --config recipe's, or digits without --config"
  )
  p.add_argument(
    "--model", help=f"model: {', '.join(MODELS)}; unset: the recipe's (its own model kwargs)"
  )
  p.add_argument("--workdir", required=True, help="where the checkpoints and the result go")
  p.add_argument(
    "--seed",
    type=int,
    help="seed of initialisation, batch order and augmentation; unset: the recipe's",
  )
  p.add_argument("--retrain", action="store_true", help="train on the retain set only")
  p.add_argument("--forget", help=FORGET_HELP)
  p.add_argument("--forget-seed", type=int, default=0, help="seed of random: forget sets")
  p.add_argument(
    "--resume", action="store_true", help="continue a killed run from its latest checkpoint"
  )
  p.add_argument(
    "--data-dir",
    help="dataset directory; unset: $JAXUNLEARN_DATA_DIR or ~/.cache/jaxunlearn/datasets",
  )
  p.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="override any config key of the recipe (repeatable), e.g. --set epochs=5",
  )
  p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
  return p


def parse_args(argv=None):
  return build_parser().parse_args(argv)


@main_guard
def main(argv=None):
  args = parse_args(argv)
  if args.config in ddpm.PRETRAIN_RECIPES:  # a class-conditional DDPM (experiments.ddpm)
    print(json.dumps(ddpm.pretrain_command(args), indent=2))
    return
  name = args.config or configs.DEFAULT_FOR_DATASET.get(args.dataset or "digits")
  if name is None:
    raise ConfigError(
      f"no default recipe for dataset {args.dataset!r}; pass --config "
      f"({', '.join(configs.PRETRAIN_CONFIGS)})"
    )
  config = configs.get_pretrain_config(name)
  changes = {
    k: v
    for k, v in (("dataset", args.dataset), ("model", args.model), ("seed", args.seed))
    if v is not None
  }
  if "model" in changes and changes["model"] != config.model:
    if changes["model"] not in MODELS:
      raise ConfigError(f"unknown model {changes['model']!r}; valid: {', '.join(MODELS)}")
    changes["model_kwargs"] = {}
  config = override(dataclasses.replace(config, **changes), args.set)
  result = train(
    config,
    args.workdir,
    forget_spec=args.forget,
    retrain=args.retrain,
    resume=args.resume,
    data_dir=args.data_dir,
    forget_seed=args.forget_seed,
    progress=not args.no_progress,
  )
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
