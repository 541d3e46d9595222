"""Team backends for real: PostgreSQL (from Debian's packages, started by `.ci/run` or by
`scripts/postgres.sh`) as the Optuna storage and as the MLflow tracking server's backend store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import MICRO_CORPUS, REPO
from .sweep_preset import search_preset

pytestmark = pytest.mark.slow

PG_SEARCH = search_preset(
    "pg",
    max_epochs=1,
    n_trials=2,
    space="""\
  params:
    optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
  enqueue:
    - {optim.lr: 0.002}
    - {optim.lr: 0.004}
""",
)


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def test_two_sweep_workers_share_one_study_on_postgresql(
    postgres_db: str, tmp_path: Path, monkeypatch
) -> None:
    import optuna
    from optuna.trial import TrialState

    from speakerops.core.config import compose
    from speakerops.data.prepare import prepare
    from speakerops.train.sweep import sweep

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    (tmp_path / "conf/hparams_search/pg.yaml").write_text(PG_SEARCH)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPEAKEROPS_CONF", str(tmp_path / "conf"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    overrides = [*MICRO_CORPUS, "data.loader.crop_seconds=1.0", "model.attention_channels=8"]
    prepare(compose(overrides).data, progress=False)
    storage = sqlalchemy_url(postgres_db)
    summary = sweep(["hparams_search=pg", f"sweep.storage={storage}", *overrides])
    study = optuna.load_study(study_name="pg", storage=storage)
    trials = study.get_trials()
    assert len(trials) == 2 and summary["trials_this_sweep"] == 2
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert sorted(t.params["optim.lr"] for t in trials) == [0.002, 0.004]
    # each worker took one trial: both worker logs exist and the study lives in PostgreSQL
    assert (tmp_path / "artifacts/sweeps/pg/worker-0.log").is_file()
    assert (tmp_path / "artifacts/sweeps/pg/worker-1.log").is_file()
    assert not (tmp_path / "registry" / "optuna.db").exists()
