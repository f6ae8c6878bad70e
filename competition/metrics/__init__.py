"""Official metrics: pure functions, arrays in, numbers out (definitions: METRICS.md)."""
