"""``payscore model show|verify``: a model artifact's metadata, digest and trust checks."""

from __future__ import annotations

import json

import typer

from payscore.cli.common import console, settings_from

PathArg = typer.Argument(..., help="The model file (its .json, .sha256 and .sig beside it).")


def register(app: typer.Typer) -> None:
    app.info.name = "model"
    app.callback()(model)
    app.command("show")(show)
    app.command("verify")(verify)


def model() -> None:
    """Show a model's metadata and digest without unpickling it, or verify that it is trusted.

    Pin the digest `show` prints as model_sha256, or set model_key (env PAYSCORE_MODEL_KEY)
    to sign models at train time and require the signature at load (docs/security.md).
    """


def _print(text: str) -> None:
    console.print(text, highlight=False, markup=False, soft_wrap=True)  # the artifact's words


def show(path: str = PathArg) -> None:
    """Print the sidecar metadata, the artifact digest and whether a signature exists.

    Reads the JSON sidecar only: nothing is unpickled, so this is safe on an untrusted file.
    """
    from payscore.core.artifact import describe

    shown = describe(path)
    _print(f"model {shown['path']}")
    _print(f"version {shown['version']}")
    _print(f"digest (pin as model_sha256) {shown['digest']}")
    signed = "yes (checked when model_key is set)" if shown["signature"] else "none"
    _print(f"signature {signed}")
    _print(f"features {', '.join(shown['feature_names'])}")
    _print(json.dumps(shown["metadata"], indent=2, sort_keys=True))


def verify(ctx: typer.Context, path: str = PathArg) -> None:
    """Check that a model is intact, trusted as configured, loads and scores; exit 1 if not.

    One line per check: digest file, sidecar, pinned digest (model_sha256), signature
    (model_key), scikit-learn version, then the estimator unpickled and a probe scored.
    """
    # Heavy (scikit-learn): only when the command runs.
    import sklearn

    from payscore.core.artifact import checks
    from payscore.core.model import load_artifact
    from payscore.errors import ModelError

    settings = settings_from(ctx)
    results, verified = checks(path, settings, sklearn.__version__)
    for check in results:
        status = "skip" if not check.checked else "ok  " if check.ok else "FAIL"
        _print(f"{status} {check.name}: {check.detail}")
    if verified is None:
        raise typer.Exit(1)
    try:
        artifact = load_artifact(path, settings)
        artifact.warm_up()
        scores = artifact.predict_scores(artifact.feature_names, artifact.probe())
    except ModelError as e:
        _print(f"FAIL estimator: {e}")
        raise typer.Exit(1) from None
    _print(f"ok   estimator: unpickled, version {artifact.version}")
    _print(f"ok   probe: {len(scores)} rows scored in [0, 1] by {artifact.scoring_path}")
