"""Everything HTTP: the app factory, the plugin, request parsing, handlers, problems, auth, probes, OpenAPI."""
