"""Moving rows in and out as NDJSON (``flux-dao export`` / ``flux-dao import``), straight from and to the tables.

``order`` (dependency order, pure), ``rows`` (the line format, pure), ``sources`` (where the lines of an import
come from), ``backends`` (the few statements each database needs), ``export`` and ``load``.
"""
