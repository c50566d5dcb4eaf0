"""`python -m relay` runs the CLI."""
from relay.cli.main import main

main()
