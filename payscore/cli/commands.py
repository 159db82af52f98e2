"""Joins the one-module-per-command pieces into the app."""

from __future__ import annotations

import typer

from payscore.cli import (
    bench,
    config_cmd,
    consume,
    dashboard,
    demo,
    initdb,
    produce,
    replay,
    score,
    train,
)


def register(app: typer.Typer) -> None:
    for module in (
        config_cmd,
        initdb,
        train,
        score,
        consume,
        produce,
        replay,
        demo,
        dashboard,
        bench,
    ):
        module.register(app)
