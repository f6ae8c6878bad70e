"""The course portal: a FastAPI application over the same store and scorer as the CLI."""
