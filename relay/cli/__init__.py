"""The `relay` command line: one module per command group; `relay.cli.main` is the entry point."""
