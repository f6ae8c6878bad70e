"""The interfaces: the `competition` command line and the course portal (web)."""
