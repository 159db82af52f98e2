"""Trusting a model file: a pinned digest and an HMAC key that write access cannot forge."""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass

import numpy as np
import pytest
from pydantic import SecretStr
from sklearn.ensemble import HistGradientBoostingClassifier

from payscore.core import artifact as files
from payscore.core.model import ModelArtifact, load_artifact, save_artifact
from payscore.errors import ModelError

NAMES = ("amount", "customer_nb_tx_1day", "terminal_risk_1day")
KEY = SecretStr("correct horse battery staple")


@dataclass(frozen=True)
class Trust:
    model_sha256: str | None = None
    model_key: SecretStr | None = None


def make_artifact(seed: int, review: float = 0.3) -> ModelArtifact:
    rng = np.random.default_rng(seed)
    X = rng.random((300, 3))
    y = (X[:, 0] + 0.2 * rng.random(300) > 0.9).astype(int)
    est = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
    return ModelArtifact(est, NAMES, {"thresholds": {"review": review, "decline": 0.9}})


@pytest.fixture(scope="module")
def trusted() -> ModelArtifact:
    return make_artifact(0)


@pytest.fixture(scope="module")
def forged() -> ModelArtifact:
    """The attacker's model: lenient thresholds, its own estimator."""
    return make_artifact(1, review=0.99)


#: Set by a pickle's payload when it runs: proves whether anything was unpickled.
RAN: list[str] = []


def ran(what: str) -> None:
    RAN.append(what)


class _Payload:
    def __reduce__(self):
        return (ran, ("unpickled",))


def write_whole_forgery(path, metadata) -> None:
    """What anyone with write access to the folder can do: a self-consistent set of files."""
    model_bytes = pickle.dumps(_Payload())
    sidecar = files.sidecar_bytes(model_bytes, "forged000000", list(NAMES), metadata)
    files.write(path, model_bytes, sidecar, None)


def test_save_returns_the_digest_show_prints(tmp_path, trusted) -> None:
    path = tmp_path / "m.joblib"
    digest = save_artifact(trusted, path)
    assert digest == hashlib.sha256((tmp_path / "m.joblib.json").read_bytes()).hexdigest()
    assert files.describe(path)["digest"] == digest
    assert files.describe(path)["signature"] is False
    assert load_artifact(path, Trust(model_sha256=digest)).version == trusted.version
    assert load_artifact(path, Trust(model_sha256=digest.upper())).version == trusted.version


def test_a_replaced_artifact_loads_without_a_pin_and_is_refused_with_one(
    tmp_path, trusted, forged
) -> None:
    path = tmp_path / "m.joblib"
    pin = save_artifact(trusted, path)
    save_artifact(forged, path)  # model, sidecar and .sha256 all rewritten, consistently
    # The digest file proves integrity only: without a pin the forgery loads.
    assert load_artifact(path).thresholds["review"] == 0.99
    with pytest.raises(ModelError, match="pinned model_sha256"):
        load_artifact(path, Trust(model_sha256=pin))


def test_model_rewritten_with_its_sha256_is_refused_when_pinned(tmp_path, trusted, forged):
    """The issue's case: the model file and its .sha256 rewritten, the sidecar left alone."""
    path = tmp_path / "m.joblib"
    pin = save_artifact(trusted, path)
    other = tmp_path / "other.joblib"
    save_artifact(forged, other)
    path.write_bytes(other.read_bytes())
    new = hashlib.sha256(path.read_bytes()).hexdigest()
    side = hashlib.sha256((tmp_path / "m.joblib.json").read_bytes()).hexdigest()
    (tmp_path / "m.joblib.sha256").write_text(f"{new}  m.joblib\n{side}  m.joblib.json\n")
    for trust in (Trust(model_sha256=pin), Trust(model_key=KEY), None):
        with pytest.raises(ModelError, match="recorded in its sidecar"):
            load_artifact(path, trust)


def test_nothing_is_unpickled_before_the_pin_and_key_pass(tmp_path, trusted) -> None:
    path = tmp_path / "m.joblib"
    pin = save_artifact(trusted, path, key=KEY)
    write_whole_forgery(path, dict(trusted.metadata))
    RAN.clear()
    with pytest.raises(ModelError, match="pinned model_sha256"):
        load_artifact(path, Trust(model_sha256=pin))
    with pytest.raises(ModelError, match="no signature file"):
        load_artifact(path, Trust(model_key=KEY))
    assert RAN == []
    # Without a pin or key the forgery's pickle runs: the digest file cannot prevent it.
    with pytest.raises(ModelError):
        load_artifact(path)
    assert RAN == ["unpickled"]


def test_signed_at_save_and_checked_at_load(tmp_path, trusted, forged) -> None:
    path = tmp_path / "m.joblib"
    save_artifact(trusted, path, key=KEY)
    sig = (tmp_path / "m.joblib.sig").read_text()
    assert len(sig.strip()) == 64 and KEY.get_secret_value() not in sig
    assert load_artifact(path, Trust(model_key=KEY)).version == trusted.version
    with pytest.raises(ModelError, match="does not match model_key"):
        load_artifact(path, Trust(model_key=SecretStr("another key, also long enough")))
    # A forgery with the old signature copied beside it: the signature covers the sidecar.
    save_artifact(forged, path)
    assert not (tmp_path / "m.joblib.sig").exists()  # saved without a key: no stale signature
    (tmp_path / "m.joblib.sig").write_text(sig)
    with pytest.raises(ModelError, match="does not match model_key"):
        load_artifact(path, Trust(model_key=KEY))


def test_metadata_in_the_sidecar_cannot_be_swapped(tmp_path, trusted) -> None:
    path = tmp_path / "m.joblib"
    pin = save_artifact(trusted, path, key=KEY)
    sidecar = tmp_path / "m.joblib.json"
    doc = json.loads(sidecar.read_text())
    doc["metadata"]["thresholds"]["review"] = 0.99
    sidecar.write_text(json.dumps(doc))
    model_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    side_sha = hashlib.sha256(sidecar.read_bytes()).hexdigest()
    (tmp_path / "m.joblib.sha256").write_text(f"{model_sha}  m\n{side_sha}  m.json\n")
    assert load_artifact(path).thresholds["review"] == 0.99  # integrity only
    with pytest.raises(ModelError, match="pinned model_sha256"):
        load_artifact(path, Trust(model_sha256=pin))
    with pytest.raises(ModelError, match="does not match model_key"):
        load_artifact(path, Trust(model_key=KEY))


def test_show_reads_the_sidecar_without_unpickling(tmp_path, trusted, monkeypatch) -> None:
    path = tmp_path / "m.joblib"
    save_artifact(trusted, path, key=KEY)

    def refuse(*args, **kwargs):
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr("joblib.load", refuse)
    shown = files.describe(path)
    assert shown["version"] == trusted.version
    assert shown["feature_names"] == list(NAMES)
    assert shown["metadata"]["thresholds"]["review"] == 0.3
    assert shown["signature"] is True


def test_verify_lists_every_check(tmp_path, trusted) -> None:
    path = tmp_path / "m.joblib"
    pin = save_artifact(trusted, path)
    results, ok = files.checks(path, Trust(model_sha256=pin, model_key=KEY), "1.0.0")
    assert ok is None
    assert [(c.name, c.ok) for c in results] == [
        ("sidecar", True),
        ("digest file", True),
        ("pinned digest", True),
        ("signature", False),
        ("scikit-learn", False),
    ]


def test_a_sidecar_with_a_non_hex_digest_is_a_clean_refusal(tmp_path, trusted) -> None:
    path = tmp_path / "m.joblib"
    save_artifact(trusted, path)
    sidecar = tmp_path / "m.joblib.json"
    doc = json.loads(sidecar.read_text())
    doc["model_file"]["sha256"] = "é" * 64
    sidecar.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="recorded in its sidecar"):
        load_artifact(path)
