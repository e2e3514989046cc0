"""``edgepress search``: a tiny real search on digits (SQLite), resume, the front rebuilt by
``compress``, bad input, and several workers on a real PostgreSQL server (Debian's, started here
in a temporary directory as the postgres user) — with a worker killed by SIGKILL."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import run_cli

from edgepress.errors import InputError
from edgepress.search import SearchConfig, search

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = dict(max_epochs=1, latency_seconds=0.1, screen=100)


@pytest.fixture(scope="module")
def tiny_search(mlp_run, tmp_path_factory):
    import torch

    out = tmp_path_factory.mktemp("search") / "s"
    THREADS["search"] = torch.get_num_threads()
    summary = search(mlp_run, SearchConfig(trials=5, seed=1, **TINY), out=out, progress=False)
    return out, summary


THREADS: dict = {}  # training is bit-exact only at the same torch thread count


def test_a_tiny_search_writes_every_file(tiny_search):
    out, summary = tiny_search
    for name in ("front.json", "trials.csv", "search.md", "report.html", "search.db"):
        assert (out / name).is_file(), name
    assert summary["trials"] == 5 and summary["front"], summary
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 6  # header + 5 trials
    shipped = {r["recipe"] for r in summary["shipped"]}
    assert {"int8", "sparse-90"} <= shipped  # the shipped recipes went first
    from edgepress.data import load_data

    n_test = len(load_data("digits").y_test)
    for r in summary["front"]:
        assert "accuracy_split" not in r and r["n_test"] == n_test  # the front: on test
        assert r["val_loss_pts"] <= 1.0  # the hard budget
        assert Path(r["dir"]).is_dir() and r["recipe"].startswith("- step:")
    knee = summary["knee"]
    assert knee is not None and knee["trial"] in {r["trial"] for r in summary["front"]}
    assert "Suggested knee" in (out / "search.md").read_text()


def test_the_front_is_not_dominated_beyond_the_noise(tiny_search):
    from edgepress.search.front import Point, beats

    _, summary = tiny_search
    pts = [Point(str(r["trial"]), r["size_gzip_bytes"], r["search_speedup"],
                 tuple(r["search_speedup_ci95"])) for r in summary["front"]]
    assert not any(beats(a, b) for a in pts for b in pts if a is not b)


def test_a_front_recipe_rebuilt_by_compress_is_the_same_deployment(tiny_search, mlp_run,
                                                                    tmp_path, capsys):
    """Byte for byte at the search's torch thread count (other counts sum in another order:
    the same model within float rounding)."""
    import torch

    out, summary = tiny_search
    torch.set_num_threads(THREADS["search"])
    k = summary["knee"]
    recipe = tmp_path / "knee.yaml"
    recipe.write_text(k["recipe"])
    code, _, err = run_cli(capsys, "compress", mlp_run, "--recipe", recipe, "--out",
                           tmp_path / "again", "--no-progress")
    assert code == 0, err
    again = hashlib.sha256((tmp_path / "again" / "model.onnx").read_bytes()).hexdigest()
    assert again == k["deployment_sha256"]


def test_the_same_command_again_resumes(tiny_search, mlp_run):
    out, first = tiny_search
    numbers = [json.loads(json.dumps(r))["trial"] for r in first["front"]]
    summary = search(mlp_run, SearchConfig(trials=6, seed=1, **TINY), out=out, progress=False)
    assert summary["trials"] == 6  # one more, not six more
    rows = (out / "trials.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(6))
    assert set(numbers) <= {int(r.split(",")[0]) for r in rows}


def test_bad_search_input_is_one_line(mlp_run, tmp_path, capsys, tiny_search):
    def bad(*args):
        code, _, err = run_cli(capsys, "search", mlp_run, "--out", tmp_path / "o", *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        return err

    assert "--budget-pts must be >= 0" in bad("--budget-pts", "-1")
    assert "unknown objective 'energy'" in bad("--objectives", "size,energy")
    assert "--trials must be >= 1" in bad("--trials", "0")
    err = bad("--storage", "postgresql://bob:s3cret@127.0.0.1:9/nowhere", "--trials", "1")
    assert "cannot open the search storage" in err and "s3cret" not in err and "***" in err
    out, _ = tiny_search
    err = bad("--storage", f"sqlite:///{out / 'search.db'}", "--budget-pts", "0.5")
    assert "exists with a different search space" in err and "--study-name" in err
    assert not (tmp_path / "o" / "front.json").exists()
    with pytest.raises(InputError, match="is the run being read"):
        search(mlp_run, SearchConfig(trials=1), out=mlp_run)


# --- several workers on a real PostgreSQL server ----------------------------------------------

@pytest.fixture(scope="module")
def postgres():
    """Debian's PostgreSQL started in a temporary data directory on a free port, as the
    postgres user (the set-up installs the server; the test fails, not skips, without it)."""
    from edgepress.search.testing import throwaway_postgres

    with throwaway_postgres() as url:
        yield url


def _worker(run, out, url, trials, env):
    return subprocess.Popen(
        [sys.executable, "-m", "edgepress", "search", str(run), "--out", str(out), "--storage",
         url, "--study-name", "two", "--trials", str(trials), "--max-epochs", "1",
         "--seed", "3", "--no-progress"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def test_two_workers_and_a_killed_one_finish_one_postgres_study(postgres, mlp_run, tmp_path):
    import optuna
    from optuna.trial import TrialState

    env = {**os.environ, "EDGEPRESS_SEARCH_GRACE": "4", "EDGEPRESS_LATENCY_SECONDS": "0.1"}
    url = postgres
    # a worker killed mid-trial: its RUNNING trial goes stale and is retried by the others
    victim = _worker(mlp_run, tmp_path / "v", url, 5, env)
    storage = url.replace("postgresql://", "postgresql+psycopg://")
    deadline = time.time() + 240
    while time.time() < deadline:
        try:
            st = optuna.load_study(study_name="two", storage=storage)
            if st.get_trials(states=(TrialState.RUNNING,)):
                break
        except KeyError:
            pass
        time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(5)  # past the grace period: the killed trial is stale
    a = _worker(mlp_run, tmp_path / "a", url, 5, env)
    b = _worker(mlp_run, tmp_path / "b", url, 5, env)
    for p in (a, b):
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    st = optuna.load_study(study_name="two", storage=storage)
    trials = st.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert 5 <= len(finished) <= 6  # the total (a last trial may start as the other ends)
    assert len({t.number for t in trials}) == len(trials)
    assert failed, "the killed worker's trial should have been failed as stale"
    retried = [t for t in finished if t.system_attrs.get("failed_trial") in
               {f.number for f in failed}]
    assert retried, "the killed trial was not retried"
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for d in (tmp_path / "a", tmp_path / "b"):
        assert (d / "front.json").is_file()
    shutil.rmtree(tmp_path / "v", ignore_errors=True)


def test_a_repeated_recipe_is_not_rebuilt_or_retimed(tiny_search, mlp_run, tmp_path):
    """The sampler may draw a recipe again: the repeat takes the first trial's figures (no
    rebuild, no timing) and stays off the front."""
    import optuna

    out, summary = tiny_search
    study = optuna.load_study(study_name="edgepress-search",
                              storage=f"sqlite:///{out / 'search.db'}")
    first = next(t for t in study.trials if t.user_attrs.get("shipped_recipe") == "int8")
    params = dict(first.params)
    copy = tmp_path / "again"
    shutil.copytree(out, copy)
    study = optuna.load_study(study_name="edgepress-search",
                              storage=f"sqlite:///{copy / 'search.db'}")
    study.enqueue_trial(params)
    from edgepress.checkpoint import load_run
    from edgepress.search.run import _Search

    s = _Search(load_run(mlp_run), SearchConfig(trials=6, max_epochs=1), copy, "digits")
    t0 = time.perf_counter()
    study.optimize(s.objective, n_trials=1)
    assert time.perf_counter() - t0 < 3  # neither built nor timed
    last = study.trials[-1]
    assert last.user_attrs["duplicate_of"] == first.number
    assert last.values == first.values and "dir" not in last.user_attrs
    assert not (copy / "trials" / f"{last.number:04d}").exists()


def test_a_timing_worker_is_not_starved_by_new_trainings(tmp_path, monkeypatch):
    """Once a worker waits to time, trainings that start later wait for it (the gate)."""
    import threading

    from edgepress.search import run as search_run

    monkeypatch.setattr(search_run, "LOCK_PATH", tmp_path / "timing.lock")
    order: list[str] = []

    def train(name: str, start: float, hold: float) -> None:
        time.sleep(start)
        with search_run.host_lock(exclusive=False):
            order.append(f"{name} trains")
            time.sleep(hold)

    def timer() -> None:
        time.sleep(0.2)
        with search_run.host_lock(exclusive=True):
            order.append("timer times")
            time.sleep(0.3)

    threads = [threading.Thread(target=train, args=("a", 0.0, 1.0)),
               threading.Thread(target=timer),
               threading.Thread(target=train, args=("b", 0.5, 0.1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["a trains", "timer times", "b trains"]
