"""The model artifact on disk, and every check made before any of it is unpickled.

For a model file ``m.joblib`` there are up to four files:

- ``m.joblib``: the estimator, pickled (joblib, compressed);
- ``m.joblib.json``: the sidecar, plain JSON: format, version, feature names, metadata and the
  SHA-256 of ``m.joblib``. ``payscore model show`` reads it without unpickling anything;
- ``m.joblib.sha256``: both files' SHA-256 in ``sha256sum`` form. It proves integrity only
  (a half-written or damaged file): whoever can rewrite the model can rewrite this too;
- ``m.joblib.sig``: written when ``model_key`` is set: HMAC-SHA256 of the sidecar.

The *artifact digest* is the SHA-256 of the sidecar. The sidecar records the model file's
SHA-256, so a pinned digest (``model_sha256``) or a signature covers both files: neither the
estimator nor its metadata can be swapped without the pin or the key. This module reads
bytes and JSON only (standard library); ``model.py`` unpickles after ``verified`` returns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from payscore.errors import ModelError

FORMAT = "payscore-model/2"
HINT = "run `payscore train` to create one"
MAX_MODEL_BYTES = 2 * 1024**3
MAX_SIDECAR_BYTES = 16 * 1024**2
_MAX_SMALL_BYTES = 4096
#: Bound into every signature, so a MAC made with the same key for something else never
#: passes for a model sidecar.
_SIGNING_CONTEXT = b"payscore model sidecar v2\n"


class Secret(Protocol):
    def get_secret_value(self) -> str: ...


class Trust(Protocol):
    """What a loader trusts beyond the files; ``Settings`` is one (its ``model_*`` fields)."""

    @property
    def model_sha256(self) -> str | None: ...

    @property
    def model_key(self) -> Secret | None: ...


@dataclass(frozen=True)
class Files:
    model: Path
    sidecar: Path
    digest: Path
    signature: Path


def files(path: str | Path) -> Files:
    path = Path(path)
    return Files(path, Path(f"{path}.json"), Path(f"{path}.sha256"), Path(f"{path}.sig"))


@dataclass(frozen=True)
class Check:
    """One check's outcome; ``detail`` is a whole sentence (the error when ``ok`` is False)."""

    name: str
    ok: bool
    detail: str
    checked: bool = True  # False: not configured (no pin, no key), so not made


@dataclass(frozen=True)
class Verified:
    """An artifact whose checks all passed: the estimator's bytes and the parsed sidecar."""

    model_bytes: bytes
    sidecar: dict[str, Any]
    digest: str  # SHA-256 of the sidecar: the artifact digest


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key_bytes(key: Secret) -> bytes:
    raw = key.get_secret_value().encode("utf-8")
    if not raw:
        raise ModelError("model_key is empty; set a long random key or unset it")
    return raw


def signature(sidecar_bytes: bytes, key: Secret) -> str:
    """Hex HMAC-SHA256 of the sidecar under ``key``."""
    return hmac.new(_key_bytes(key), _SIGNING_CONTEXT + sidecar_bytes, hashlib.sha256).hexdigest()


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise TypeError(f"model metadata holds a {type(value).__name__}, not JSON")


def sidecar_bytes(
    model_bytes: bytes, version: str, feature_names: list[str], metadata: dict[str, Any]
) -> bytes:
    document = {
        "format": FORMAT,
        "version": version,
        "feature_names": feature_names,
        "metadata": metadata,
        "model_file": {"sha256": sha256_hex(model_bytes), "bytes": len(model_bytes)},
    }
    text = json.dumps(document, indent=2, sort_keys=True, default=_json_default)
    return (text + "\n").encode("utf-8")


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write(path: str | Path, model_bytes: bytes, sidecar: bytes, key: Secret | None) -> str:
    """Write the model, its sidecar, digest file and (with a key) signature; the digest back.

    Without a key a signature left by an earlier model is removed: it would sign nothing.
    """
    f = files(path)
    digest = sha256_hex(sidecar)
    mac = signature(sidecar, key) if key is not None else None
    try:
        f.model.parent.mkdir(parents=True, exist_ok=True)
        _replace(f.model, model_bytes)
        _replace(f.sidecar, sidecar)
        if mac is not None:
            _replace(f.signature, f"{mac}\n".encode())
        else:
            f.signature.unlink(missing_ok=True)
        lines = f"{sha256_hex(model_bytes)}  {f.model.name}\n{digest}  {f.sidecar.name}\n"
        _replace(f.digest, lines.encode())
    except OSError as e:
        raise ModelError(f"cannot write model artifact {f.model}: {e.strerror or e}") from e
    return digest


def _read(path: Path, limit: int) -> bytes:
    try:
        if path.stat().st_size > limit:
            raise ModelError(f"{path} is larger than {limit:,} bytes; refusing it")
        return path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror or e}") from e


def _read_optional(path: Path, limit: int) -> bytes | None:
    return _read(path, limit) if path.is_file() else None


def _parse_sidecar(f: Files, data: bytes, model_sha: str) -> tuple[dict[str, Any] | None, str]:
    """The sidecar and "" if it is sound and names this model file; else None and why."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, f"sidecar {f.sidecar} is not JSON; refusing the model"
    ok_shape = (
        isinstance(doc, dict)
        and isinstance(doc.get("version"), str)
        and isinstance(doc.get("metadata"), dict)
        and isinstance(doc.get("feature_names"), list)
        and all(isinstance(n, str) for n in doc["feature_names"])
        and isinstance(doc.get("model_file"), dict)
        and isinstance(doc["model_file"].get("sha256"), str)
    )
    if not ok_shape or doc.get("format") != FORMAT:
        return None, f"sidecar {f.sidecar} is not a {FORMAT} sidecar; retrain with `payscore train`"
    recorded = doc["model_file"]["sha256"].lower().encode()
    if not hmac.compare_digest(recorded, model_sha.encode()):
        return None, (
            f"model file {f.model} does not match the SHA-256 recorded in its sidecar "
            f"(replaced or half-written); refusing it"
        )
    return doc, ""


def _digest_file_check(f: Files, text: bytes | None, model_sha: str, side_sha: str | None) -> Check:
    if text is None:
        return Check(
            "digest file",
            False,
            f"model artifact {f.model} has no digest file {f.digest.name}; refusing it",
        )
    lines = text.decode("latin-1").splitlines()
    listed = [line.split()[0].lower() for line in lines if line.strip()]
    if listed[:2] != [model_sha, side_sha]:
        return Check(
            "digest file",
            False,
            f"model artifact {f.model} does not match its "
            f"SHA-256 digest file (damaged or half-written); {HINT}",
        )
    return Check(
        "digest file",
        True,
        f"{f.digest.name} matches both files (integrity only: "
        "whoever can rewrite them can rewrite it)",
    )


def _pin_check(f: Files, pin: str | None, side_sha: str | None) -> Check:
    if pin is None:
        return Check("pinned digest", True, "not checked: model_sha256 is not set", False)
    pinned = pin.strip().lower().encode()
    if side_sha is not None and hmac.compare_digest(pinned, side_sha.encode()):
        return Check("pinned digest", True, "the artifact digest equals model_sha256")
    return Check(
        "pinned digest",
        False,
        f"model artifact {f.model} does not match the pinned "
        "model_sha256; refusing it (its digest: `payscore model show`)",
    )


def _signature_check(f: Files, key: Secret | None, side: bytes | None) -> Check:
    if key is None:
        found = "present" if f.signature.is_file() else "none"
        return Check("signature", True, f"model_key is not set (signature {found})", False)
    mac = _read_optional(f.signature, _MAX_SMALL_BYTES)
    if mac is None:
        return Check(
            "signature",
            False,
            f"model artifact {f.model} has no signature file "
            f"{f.signature.name}, and model_key is set; refusing it",
        )
    given = mac.decode("latin-1").strip().lower().encode()
    if side is not None and hmac.compare_digest(given, signature(side, key).encode()):
        return Check("signature", True, "HMAC-SHA256 of the sidecar matches model_key")
    return Check(
        "signature",
        False,
        f"the signature of model artifact {f.model} does not match model_key; refusing it",
    )


def _sklearn_check(f: Files, metadata: dict[str, Any], installed: str) -> Check:
    made_with = str(metadata.get("library_versions", {}).get("scikit-learn", "unknown"))
    if made_with.split(".")[:2] == installed.split(".")[:2]:
        return Check("scikit-learn", True, f"made with scikit-learn {made_with}")
    return Check(
        "scikit-learn",
        False,
        f"model artifact {f.model} was made with scikit-learn "
        f"{made_with}, but {installed} is installed; retrain it with `payscore train`",
    )


def checks(
    path: str | Path, trust: Trust | None = None, sklearn_version: str | None = None
) -> tuple[list[Check], Verified | None]:
    """Every check that needs no unpickling, in order; the verified files if all passed.

    A missing model file ends the list at once; otherwise each check runs even after an
    earlier one failed, so ``payscore model verify`` can list them all.
    """
    f = files(path)
    if not f.model.is_file():
        return [Check("model file", False, f"no model artifact at {f.model}; {HINT}")], None
    model_bytes = _read(f.model, MAX_MODEL_BYTES)
    side = _read_optional(f.sidecar, MAX_SIDECAR_BYTES)
    model_sha = sha256_hex(model_bytes)
    side_sha = sha256_hex(side) if side is not None else None
    out: list[Check] = []
    doc: dict[str, Any] | None = None
    if side is None:
        out.append(
            Check(
                "sidecar",
                False,
                f"model artifact {f.model} has no metadata sidecar "
                f"{f.sidecar.name} (made by an older payscore?); retrain it with "
                "`payscore train`",
            )
        )
    else:
        doc, why = _parse_sidecar(f, side, model_sha)
        out.append(
            Check(
                "sidecar",
                doc is not None,
                why or f"{f.sidecar.name} records this model file's SHA-256",
            )
        )
    digest_text = _read_optional(f.digest, _MAX_SMALL_BYTES)
    out.append(_digest_file_check(f, digest_text, model_sha, side_sha))
    out.append(_pin_check(f, trust.model_sha256 if trust else None, side_sha))
    out.append(_signature_check(f, trust.model_key if trust else None, side))
    if sklearn_version is not None and doc is not None:
        out.append(_sklearn_check(f, doc["metadata"], sklearn_version))
    if all(c.ok for c in out) and doc is not None and side_sha is not None:
        return out, Verified(model_bytes, doc, side_sha)
    return out, None


def verified(
    path: str | Path, trust: Trust | None = None, sklearn_version: str | None = None
) -> Verified:
    """The artifact's files after every check, or a ``ModelError`` naming the first failure."""
    results, ok = checks(path, trust, sklearn_version)
    if ok is None:
        raise ModelError(next(c.detail for c in results if not c.ok))
    return ok


def describe(path: str | Path) -> dict[str, Any]:
    """What ``payscore model show`` prints: the sidecar, the artifact digest, which files exist.

    Reads JSON only; says whether the model file matches the sidecar, trusts nothing.
    """
    f = files(path)
    if not f.model.is_file():
        raise ModelError(f"no model artifact at {f.model}; {HINT}")
    side = _read_optional(f.sidecar, MAX_SIDECAR_BYTES)
    if side is None:
        raise ModelError(
            f"model artifact {f.model} has no metadata sidecar {f.sidecar.name}; "
            "retrain it with `payscore train`"
        )
    model_sha = sha256_hex(_read(f.model, MAX_MODEL_BYTES))
    doc, why = _parse_sidecar(f, side, model_sha)
    if doc is None:
        raise ModelError(why)
    return {
        "path": str(f.model),
        "digest": sha256_hex(side),
        "signature": f.signature.is_file(),
        "version": doc["version"],
        "feature_names": doc["feature_names"],
        "metadata": doc["metadata"],
    }
