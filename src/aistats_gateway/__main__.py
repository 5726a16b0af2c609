"""``python -m aistats_gateway`` runs the command line."""

from .cli import main

raise SystemExit(main())
