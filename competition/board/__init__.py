"""The board: prepared competitions, their store, rules, limits, selections, rescoring and
leaderboards. It calls the Task interface and never names a task."""
