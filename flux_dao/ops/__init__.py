"""Running the service: the command line, the start-up summary and diagnostics."""
