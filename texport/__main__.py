"""`python -m texport` runs the CLI."""

from texport.commands.cli import main

raise SystemExit(main())
