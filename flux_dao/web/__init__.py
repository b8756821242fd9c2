"""Everything HTTP: app factory, plugin, problems, auth, probes, OpenAPI."""
