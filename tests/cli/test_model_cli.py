"""``payscore model show|verify``, ``train`` signing with model_key, and the key kept secret."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core import training
from payscore.core.model import ModelArtifact, save_artifact

runner = CliRunner()
NAMES = ("amount", "customer_nb_tx_1day", "terminal_risk_1day")
KEY = "a model key nobody else has 0123"


def tiny() -> ModelArtifact:
    rng = np.random.default_rng(0)
    X = rng.random((300, 3))
    y = (X[:, 0] > 0.8).astype(int)
    est = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
    meta = {
        "thresholds": {"review": 0.3, "decline": 0.8},
        "model_type": "HistGradientBoostingClassifier",
        "training_period": {
            "train": ["2018-04-01", "2018-04-30"],
            "test": ["2018-05-01", "2018-05-07"],
            "train_payments": 300,
        },
        "feature_ranges": {n: [0.0, 1.0] for n in NAMES},
    }
    return ModelArtifact(est, NAMES, meta)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m.joblib"
    return path, save_artifact(tiny(), path)


def test_show_prints_metadata_digest_and_signature(saved) -> None:
    path, digest = saved
    result = runner.invoke(app, ["model", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert f"digest (pin as model_sha256) {digest}" in result.output
    assert "signature none" in result.output
    assert "terminal_risk_1day" in result.output and '"review": 0.3' in result.output


def test_verify_passes_with_the_right_pin_and_fails_with_another(saved) -> None:
    path, digest = saved
    ok = runner.invoke(app, ["model", "verify", str(path)], env={"PAYSCORE_MODEL_SHA256": digest})
    assert ok.exit_code == 0, ok.output
    assert "ok   pinned digest" in ok.output and "ok   probe:" in ok.output
    assert "skip signature: model_key is not set (signature none)" in ok.output
    assert "compiled tree walk" in ok.output
    bad = runner.invoke(
        app, ["model", "verify", str(path)], env={"PAYSCORE_MODEL_SHA256": "0" * 64}
    )
    assert bad.exit_code == 1
    assert "FAIL pinned digest" in bad.output and "Traceback" not in bad.output
    assert "estimator" not in bad.output  # refused before unpickling


def test_a_key_without_a_signature_is_one_clean_error(saved) -> None:
    path, _ = saved
    result = runner.invoke(app, ["model", "verify", str(path)], env={"PAYSCORE_MODEL_KEY": KEY})
    assert result.exit_code == 1
    assert "FAIL signature" in result.output
    assert KEY not in result.output
    missing = runner.invoke(app, ["model", "show", str(path) + ".nope"])
    assert missing.exit_code == 1
    assert "no model artifact" in missing.output and "Traceback" not in missing.output


def test_train_signs_with_model_key(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(
        training,
        "train_default_model",
        lambda progress, baseline: (
            tiny(),
            {"auc_roc": 0.9, "average_precision": 0.5, "card_precision_at_100": 0.2},
        ),
    )
    out = tmp_path / "signed.joblib"
    result = runner.invoke(app, ["train", "-o", str(out)], env={"PAYSCORE_MODEL_KEY": KEY})
    assert result.exit_code == 0, result.output
    assert "signed with model_key" in result.output and KEY not in result.output
    assert (tmp_path / "signed.joblib.sig").is_file()
    verify = runner.invoke(app, ["model", "verify", str(out)], env={"PAYSCORE_MODEL_KEY": KEY})
    assert verify.exit_code == 0, verify.output
    assert "ok   signature" in verify.output
    wrong = runner.invoke(
        app, ["model", "verify", str(out)], env={"PAYSCORE_MODEL_KEY": KEY.upper()}
    )
    assert wrong.exit_code == 1 and "does not match model_key" in wrong.output


def test_config_masks_the_model_key() -> None:
    result = runner.invoke(app, ["config"], env={"PAYSCORE_MODEL_KEY": KEY})
    assert result.exit_code == 0, result.output
    assert "model_key" in result.output and KEY not in result.output


def test_model_help_imports_no_heavy_library() -> None:
    probe = (
        "import sys\nfrom payscore.cli.app import app\ntry:\n    app(sys.argv[1:])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'numpy', 'joblib'}))"
    )
    for argv in (["model", "--help"], ["model", "show", "--help"]):
        done = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=False
        )
        assert json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"')) == [], argv
