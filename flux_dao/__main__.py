"""``python -m flux_dao`` runs the CLI."""

from flux_dao.ops.cli import main

main()
