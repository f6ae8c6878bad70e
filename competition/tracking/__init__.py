"""MLflow tracking: the one package that talks to MLflow (`runs`), and where it logs
(`config`)."""
