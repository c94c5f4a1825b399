"""What compose and Kubernetes give the image must be a `ccxlic` command line that parses."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

from ccxlic_cli.main import app
from typer.main import get_command


def parse(args: Sequence[str]) -> str:
    """The path of the leaf command `ccxlic ARGS` would run, its arguments and options parsed (not run); raises the
    CLI's usage error when it does not parse. A `--help` is a valid command line."""
    cmd: Any = get_command(app)
    path = ["ccxlic"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ctx = cmd.make_context("ccxlic", list(args))
            while hasattr(cmd, "commands"):  # a group: the next word names its command
                rest = [*ctx._protected_args, *ctx.args]
                if not rest:
                    raise ValueError(f"`ccxlic {' '.join(args)}` names no command")
                name, cmd, rest = cmd.resolve_command(ctx, rest)
                path.append(name)
                ctx = cmd.make_context(name, rest, parent=ctx)
    except Exception as exc:
        if type(exc).__name__ == "Exit" and getattr(exc, "exit_code", 1) == 0:  # --help printed and left
            return " ".join(path)
        raise
    return " ".join(path)
