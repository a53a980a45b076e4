"""Bad input to the commands: one line on stderr, exit status 2, nothing written."""

import pytest

from experiments import compare, pretrain, unlearn
from jaxunlearn import data
from jaxunlearn.engine.config import TrainConfig
from jaxunlearn.engine.training import train


@pytest.fixture(scope="module")
def original(tmp_path_factory):
  base = tmp_path_factory.mktemp("rel")
  data_dir = base / "data"
  data.prepare("digits", data_dir)
  train(
    TrainConfig(epochs=1, model_kwargs={"hidden": (16,)}),
    base / "orig",
    data_dir=data_dir,
    progress=False,
  )
  return base, data_dir


def expect_error(main, argv, message, capsys):
  with pytest.raises(SystemExit) as exc:
    main(argv)
  assert exc.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and len(err.splitlines()) == 1, err
  assert message in err, err
  assert "Traceback" not in err


def test_unlearn_bad_inputs(original, tmp_path, capsys, monkeypatch):
  base, data_dir = original
  monkeypatch.setenv("JAXUNLEARN_DATA_DIR", str(data_dir))
  a_file = tmp_path / "file"
  a_file.write_text("x")
  ok = ["--original", str(base / "orig"), "--forget", "class:1", "--no-progress"]
  cases = [
    (["--method", "forgetall", *ok], "unknown method 'forgetall'"),
    (["--method", "igs", *ok, "--set", "tolerance=nan"], "tolerance must be finite"),
    (["--method", "igs", *ok, "--set", "learning_rate=-0.1"], "learning_rate must be > 0"),
    (["--method", "igs", *ok, "--set", "learning_rate=0"], "learning_rate must be > 0"),
    (["--method", "igs", *ok, "--set", "tolerence=0.1"], "did you mean 'tolerance'"),
    (["--method", "igs", *ok, "--set", "steps=many"], "not a valid int"),
    (["--method", "igs", "--original", str(base / "orig"), "--forget", "class:99"], "class"),
    (["--method", "igs", "--original", str(base / "orig"), "--forget", "random:1.5"], "random"),
    (
      ["--method", "igs", "--original", str(tmp_path / "missing"), "--forget", "class:1"],
      "no checkpoint",
    ),
  ]
  for i, (argv, message) in enumerate(cases):
    work = tmp_path / f"w{i}"
    expect_error(unlearn.main, [*argv, "--workdir", str(work)], message, capsys)
    assert not work.exists()
  expect_error(
    unlearn.main, ["--method", "igs", *ok, "--workdir", str(a_file)], "is a file", capsys
  )


def test_corrupt_original_checkpoint_is_refused_and_left_alone(
  original, tmp_path, capsys, monkeypatch
):
  import shutil

  base, data_dir = original
  monkeypatch.setenv("JAXUNLEARN_DATA_DIR", str(data_dir))
  corrupt = tmp_path / "corrupt"
  shutil.copytree(base / "orig", corrupt)
  victims = [
    p
    for p in (corrupt / "checkpoints").rglob("*")
    if p.is_file() and p.stat().st_size > 64 and "metadata" not in p.name
  ]
  assert victims
  for p in victims:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
  before = {p: p.read_bytes() for p in corrupt.rglob("*") if p.is_file()}
  expect_error(
    unlearn.main,
    [
      "--method",
      "igs",
      "--original",
      str(corrupt),
      "--forget",
      "class:1",
      "--workdir",
      str(tmp_path / "w"),
    ],
    f"checkpoint step 1 at {corrupt / 'checkpoints'} is unreadable",
    capsys,
  )
  after = {p: p.read_bytes() for p in corrupt.rglob("*") if p.is_file()}
  assert before == after


def test_pretrain_dataset_errors(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("JAXUNLEARN_DATA_DIR", str(tmp_path / "empty"))
  expect_error(
    pretrain.main,
    ["--config", "cifar10-resnet18", "--workdir", str(tmp_path / "c")],
    "not prepared",
    capsys,
  )
  expect_error(
    pretrain.main,
    ["--set", "dataset=imagenet", "--workdir", str(tmp_path / "d")],
    "imagenet",
    capsys,
  )
  expect_error(
    pretrain.main,
    ["--set", "epochs=0", "--workdir", str(tmp_path / "e")],
    "epochs must be > 0",
    capsys,
  )
  for name in "cde":
    assert not (tmp_path / name / "checkpoints").exists()


def test_compare_bad_inputs(tmp_path, capsys):
  expect_error(
    compare.main,
    ["--workdir", str(tmp_path / "w"), "--methods", "igs,magic"],
    "unknown method 'magic'",
    capsys,
  )
  expect_error(
    compare.main, ["--workdir", str(tmp_path / "w"), "--seeds", "0"], "--seeds must be", capsys
  )
  bad_class = ["--workdir", str(tmp_path / "w"), "--scenario", "digits-class"]
  expect_error(
    compare.main, [*bad_class, "--forget", "class:11"], "unknown class 11; classes are 0..9", capsys
  )
  assert not (tmp_path / "w").exists()  # not even an empty runs folder (issue 34)


def test_unlearn_refuses_an_original_with_non_finite_params_before_any_work(
  original, tmp_path, capsys, monkeypatch
):
  import jax
  import numpy as np

  base, data_dir = original
  monkeypatch.setenv("JAXUNLEARN_DATA_DIR", str(data_dir))
  real_load = unlearn.load

  def poisoned(workdir):  # an original whose training diverged
    got = real_load(workdir)
    got.params = jax.tree.map(lambda a: np.full_like(np.asarray(a), np.nan), got.params)
    return got

  monkeypatch.setattr(unlearn, "load", poisoned)
  work = tmp_path / "w"
  argv = ["--method", "igs", "--original", str(base / "orig"), "--forget", "class:1"]
  expect_error(unlearn.main, [*argv, "--workdir", str(work)], "params['", capsys)
  assert not work.exists()


def test_workdir_that_cannot_be_created(original, tmp_path, capsys, monkeypatch):
  base, data_dir = original
  monkeypatch.setenv("JAXUNLEARN_DATA_DIR", str(data_dir))
  blocker = tmp_path / "file"
  blocker.write_text("x")
  # Root ignores permission bits, so block the path with a file instead of chmod.
  expect_error(
    unlearn.main,
    [
      "--method",
      "ft",
      "--original",
      str(base / "orig"),
      "--forget",
      "class:1",
      "--workdir",
      str(blocker / "sub"),
      "--set",
      "steps=2",
      "--no-progress",
    ],
    f"Not a directory: '{blocker / 'sub'}'",
    capsys,
  )
  expect_error(
    pretrain.main,
    ["--workdir", str(blocker / "sub"), "--set", "epochs=1", "--no-progress"],
    f"Not a directory: '{blocker / 'sub'}'",
    capsys,
  )
  assert blocker.read_text() == "x"
