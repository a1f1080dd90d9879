"""The `texport` command line (typer): one module per command group, the app and its entry point in app."""

from texport.commands.cli import app, main
