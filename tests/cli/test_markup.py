"""User text in square brackets (a path, a topic) is printed as typed, not taken for rich markup.

rich drops ``[mysql]`` from ``pay[mysql].csv`` when markup is on; every line that quotes a path,
a topic or an artifact's words prints with markup off. No broker, database or training needed:
the heavy calls are replaced.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from payscore.cli import demo
from payscore.cli.app import app
from payscore.config import Settings
from payscore.core import model, training
from payscore.stream import producer
from tests.conftest import make_payscore_env
from tests.core.test_paymentfile import CATALOGUE, HEADER

runner = CliRunner()

METRICS = {"auc_roc": 0.9, "average_precision": 0.5, "card_precision_at_100": 0.25}


def _fake_artifact(model_type: str) -> Any:
    period = {"test": ["2018-05-01", "2018-05-07"], "train": ["2018-04-01", "2018-04-21"]}
    return SimpleNamespace(
        version="v1",
        metadata={
            "model_type": model_type,
            "training_period": {**period, "train_payments": 10},
            "thresholds": {"review": 0.5, "decline": 0.9},
        },
    )


def test_produce_prints_a_bracketed_topic_and_file_as_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_produce(settings: Any, source: Iterable[Any], options: Any, **kw: Any) -> Any:
        stats = producer.ProduceStats()
        stats.payments = stats.sent = sum(1 for _ in source)
        return stats

    monkeypatch.setattr(producer, "produce", fake_produce)
    src = tmp_path / "pay[mysql].csv"
    good = [text for _, text, field in CATALOGUE if field == "ok"]
    src.write_text("\n".join([HEADER, *good]) + "\n")
    args = ["produce", "--from", str(src), "--topic", "pay[1]", "--rate", "0"]
    result = runner.invoke(app, args, env=make_payscore_env())
    assert result.exit_code == 0, result.output
    assert f"producing to pay[1] ({src}); Ctrl-C stops" in result.output


def test_demo_prints_a_bracketed_model_path_as_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    saved: list[str] = []
    monkeypatch.setattr(training, "train_default_model", lambda progress: (object(), METRICS))
    monkeypatch.setattr(model, "save_artifact", lambda artifact, path, key: saved.append(str(path)))
    path = str(tmp_path / "models[v2]" / "m[1].joblib")
    demo._model(path, Settings())
    out = capsys.readouterr().out
    assert saved == [path]
    assert f"no model at {path}: training" in out
    assert f"saved to {path}" in out


def test_train_prints_the_artifacts_words_and_a_bracketed_output_as_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_train(progress: Any, baseline: bool = False) -> Any:
        return _fake_artifact("hist[gb]"), METRICS

    monkeypatch.setattr(training, "train_default_model", fake_train)
    monkeypatch.setattr(model, "save_artifact", lambda artifact, path, key: "0" * 64)
    output = str(tmp_path / "m[1].joblib")
    result = runner.invoke(
        app, ["train", "-o", output], env=make_payscore_env(), terminal_width=300
    )
    assert result.exit_code == 0, result.output
    assert "model hist[gb] trained on 10 payments" in result.output
    assert f"saved {output} (version v1)" in result.output
