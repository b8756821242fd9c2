"""``flux-dao adopt``: bring a PostgreSQL database another tool made under flux-dao's migrations, in place.

catalog (read the live database) -> plan (compare with the manifest, in words; pure) -> revision (the alembic
script that records the change) -> run (check the rows, apply everything in one transaction, stamp the head).
"""

from flux_dao.store.adopt.plan import Kind, Plan, Step
from flux_dao.store.adopt.run import Adoption, AdoptionError, Blocked, State, adopt

__all__ = ("Adoption", "AdoptionError", "Blocked", "Kind", "Plan", "State", "Step", "adopt")
