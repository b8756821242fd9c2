"""``python -m flux_dao`` runs the CLI."""

from flux_dao.cli import main

main()
