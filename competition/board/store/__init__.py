"""The submission store: SQL tables behind SQLAlchemy and content-addressed file copies."""
