"""``payscore score`` explains every payment (as the consumer does): the reasons agree with
the core's contributions, and the output column parses the same way always."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core import backtest, simulator, training
from payscore.core.explain import contributions
from payscore.core.model import ModelArtifact, save_artifact
from payscore.core.scoring import Scorer
from tests.cli.test_score import _clean_env  # noqa: F401 - autouse: a clean env, cwd tmp

runner = CliRunner()
KEYS = {"feature", "value", "contribution", "text"}


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A tree model on every engine feature, a linear one (not explainable), and an unlabelled
    payments file (so features depend on the payments alone, recomputable here)."""
    root = tmp_path_factory.mktemp("explain")
    df = simulator.generate_world(n_customers=100, n_terminals=200, n_days=30)
    df = df[df["TX_AMOUNT"] > 0]
    engine, X = training.compute_features(training.History.from_world(df))
    y = df["TX_FRAUD"].to_numpy()
    names = engine.feature_names
    thresholds = {"thresholds": {"review": 0.3, "decline": 0.9}}
    trees = ModelArtifact(
        HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(X, y), names, thresholds
    )
    save_artifact(trees, root / "trees.joblib")
    linear = ModelArtifact(LogisticRegression(max_iter=300).fit(X[:, :2], y), names[:2], thresholds)
    save_artifact(linear, root / "linear.joblib")
    labelled = root / "labelled.csv"
    simulator.write_csv(df, labelled)
    payments = root / "payments.csv"
    with labelled.open(newline="") as src, payments.open("w", newline="") as dst:
        writer = csv.writer(dst)
        for row in csv.reader(src):
            writer.writerow(row[:-1])  # drop is_fraud: no labels enter the engine
    return {"root": root, "trees": trees, "payments": payments}


def _score(case, tmp_path: Path, *extra: str, model: str = "trees"):  # type: ignore[no-untyped-def]
    root = case["root"]
    args = ["score", "-i", str(case["payments"]), "-o", str(tmp_path / "out.csv")]
    return runner.invoke(app, [*args, "--model", str(root / f"{model}.joblib"), *extra])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _features(case, rows: list[dict[str, str]]) -> tuple[Scorer, np.ndarray]:  # type: ignore[no-untyped-def]
    """The engine's matrix for the output's rows, recomputed by a fresh production Scorer."""
    artifact = case["trees"]
    scorer = Scorer.from_settings_values(
        artifact,
        None,
        review_threshold=None,
        decline_threshold=None,
        velocity_max_payments=1000,
        velocity_window_seconds=3600,
        amount_review_limit=1e12,
        amount_decline_limit=1e12,
    )
    payments = backtest.event_order(backtest.read_input(case["payments"]).payments)
    assert [p.transaction_id for p in payments] == [r["transaction_id"] for r in rows]
    X = np.vstack(
        [
            scorer.score_batch_with_features(payments[i : i + 500])[1]
            for i in range(0, len(payments), 500)
        ]
    )
    return scorer, X


def test_every_payments_reasons_agree_with_the_core(case, tmp_path: Path) -> None:
    result = _score(case, tmp_path)
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "out.csv")
    assert list(rows[0]) == ["transaction_id", "score", "status", "reason_codes", "explanation"]
    assert 5 <= sum(r["status"] != "APPROVED" for r in rows) < len(rows) // 2
    flagged = list(range(len(rows)))  # approved payments are explained too

    scorer, X = _features(case, rows)
    names = scorer.engine.feature_names
    model_names = list(case["trees"].feature_names)
    bias, C = contributions(case["trees"], names, X[flagged])
    # the contributions add up: bias plus the row's sum is the score the file holds
    scores = np.array([float(rows[i]["score"]) for i in flagged])
    assert np.allclose(expit(bias + C.sum(axis=1)), scores, rtol=0, atol=2e-6)
    explained = 0
    for k, i in enumerate(flagged):
        reasons = json.loads(rows[i]["explanation"])
        assert isinstance(reasons, list) and len(reasons) <= 3
        if C[k].max() <= 0:
            assert reasons == []
            continue
        explained += 1
        assert all(set(r) == KEYS for r in reasons)
        top = reasons[0]
        assert C[k, model_names.index(top["feature"])] == pytest.approx(C[k].max(), abs=1e-6)
        for r in reasons:
            j = model_names.index(r["feature"])
            assert r["contribution"] == pytest.approx(C[k, j], abs=1e-6) and r["contribution"] > 0
            assert r["value"] == pytest.approx(X[flagged[k], names.index(r["feature"])])
            assert r["text"]
        got = [r["contribution"] for r in reasons]
        assert got == sorted(got, reverse=True)
        assert len(reasons) == min(3, int((C[k] > 0).sum()))
    assert explained >= 5


def test_the_console_lists_the_riskiest_flagged_payments_with_their_texts(
    case, tmp_path: Path
) -> None:
    result = _score(case, tmp_path)
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "out.csv")
    flagged = [r for r in rows if r["status"] != "APPROVED"]
    lines = result.output.splitlines()
    head = next(x for x in lines if x.startswith("riskiest flagged payments"))
    assert f"({min(10, len(flagged))} of {len(flagged)};" in head
    shown = lines[lines.index(head) + 1 : lines.index(head) + 1 + min(10, len(flagged))]
    by_id = {r["transaction_id"]: r for r in flagged}
    scores = []
    for line in shown:
        tx, _, score, status, *_ = line.split()
        row = by_id[tx]
        assert status == row["status"]
        scores.append(float(score))
        texts = [r["text"] for r in json.loads(row["explanation"])]
        assert line.endswith("; ".join(texts) or "no feature raised it")
    assert scores == sorted(scores, reverse=True)
    assert max(scores) == pytest.approx(max(float(r["score"]) for r in flagged), abs=1e-3)


def test_no_explain_keeps_the_decisions_and_the_column(case, tmp_path: Path) -> None:
    default = _score(case, tmp_path)
    assert default.exit_code == 0, default.output
    explained = _rows(tmp_path / "out.csv")
    plain = _score(case, tmp_path, "--no-explain")
    assert plain.exit_code == 0, plain.output
    rows = _rows(tmp_path / "out.csv")
    assert list(rows[0]) == list(explained[0])
    assert all(r["explanation"] == "" for r in rows)
    assert [(r["transaction_id"], r["score"], r["status"]) for r in rows] == [
        (r["transaction_id"], r["score"], r["status"]) for r in explained
    ]
    assert "riskiest" not in plain.output

    one = _score(case, tmp_path, "--top-reasons", "1")
    assert one.exit_code == 0, one.output
    for r, before in zip(_rows(tmp_path / "out.csv"), explained, strict=True):
        assert json.loads(r["explanation"]) == json.loads(before["explanation"])[:1]


@pytest.mark.parametrize("value", ["0", "11", "three"])
def test_a_bad_top_reasons_is_one_clear_error(case, tmp_path: Path, value: str) -> None:
    result = _score(case, tmp_path, "--top-reasons", value)
    assert result.exit_code == 2
    errors = [x for x in result.output.splitlines() if "--top-reasons" in x]
    assert len(errors) == 1 and ("1 to 10" in errors[0] or "valid integer" in errors[0])
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.csv").exists()


def test_a_model_that_cannot_be_explained(case, tmp_path: Path) -> None:
    quiet = _score(case, tmp_path, model="linear")
    assert quiet.exit_code == 0, quiet.output
    assert "not a walkable tree model: no explanations" in quiet.output
    assert all(r["explanation"] == "" for r in _rows(tmp_path / "out.csv"))
    (tmp_path / "out.csv").unlink()

    insisted = _score(case, tmp_path, "--explain", model="linear")
    assert insisted.exit_code == 1
    assert "not a walkable tree model" in insisted.output
    assert "Traceback" not in insisted.output
    assert not (tmp_path / "out.csv").exists()
