"""cli: the ``landscape`` command (one module per subcommand)."""
