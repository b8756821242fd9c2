"""flux-dao's benchmark: flux-dao against a raw-asyncpg floor, on this machine. Run ``python -m bench --help``."""
