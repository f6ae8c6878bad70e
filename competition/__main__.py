"""`python -m competition`: the command line."""

from competition.interfaces.cli import main

main()
