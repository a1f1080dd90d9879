"""`python -m texport` runs the CLI."""

from .cli import main

raise SystemExit(main())
