"""Scoring jobs: a dispatcher claims queued submissions from the store and runs each as a job
on a runner (Dask distributed: a LocalCluster, or workers on several hosts; or threads)."""
