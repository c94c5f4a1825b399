"""`python -m ccxlic_cli`: the same as the `ccxlic` command."""

from ccxlic_cli.main import app

app(prog_name="ccxlic")
