"""What runs write beside their checkpoints (jaxunlearn.engine.records)."""

import json
import threading

from jaxunlearn.engine.records import write_json_atomic


def test_concurrent_writers_of_one_file_never_fail_and_leave_a_whole_file(tmp_path):
  """Two workers of one comparison may write its results.json at the same moment (seen in
  CI: one rename found the shared .tmp taken)."""
  path = tmp_path / "results.json"
  errors = []

  def writer(k):
    try:
      for i in range(300):
        write_json_atomic(path, {"writer": k, "i": i, "pad": "x" * 2000})
    except Exception as e:  # noqa: BLE001 - any failure is what this test looks for
      errors.append(e)

  threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors, errors[0]
  assert json.loads(path.read_text())["i"] == 299  # whole, and one writer's last
  assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left


def test_stale_temporaries_of_dead_writers_go_and_a_live_writers_stay(tmp_path):
  import os
  import subprocess
  import sys

  from jaxunlearn.engine.records import remove_stale_temporaries

  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
  stale = tmp_path / f".a.json.{dead}.0123456789ab.tmp"
  live = tmp_path / f".b.json.{os.getpid()}.0123456789ab.tmp"
  other = tmp_path / "notes.tmp"
  fresh = tmp_path / f".c.json.{dead}.0123456789ab.tmp"  # just written: maybe mid-rename
  for p in (stale, live, other, fresh):
    p.write_text("{")
  for p in (stale, live, other):
    os.utime(p, (0, 0))  # written long ago
  assert remove_stale_temporaries(tmp_path) == [stale]
  assert not stale.exists() and live.exists() and other.exists() and fresh.exists()
