"""Alembic environment: flux-dao builds the metadata from the manifest beside this folder."""

from flux_dao.store.migrations import run_env

run_env()
