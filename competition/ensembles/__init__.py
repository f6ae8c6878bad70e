"""Ensembles of runs: members' prediction maps combined (`combine`), post-processed by the
task, submitted and logged (`build`)."""
