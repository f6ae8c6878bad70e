"""The landmark task: 3D landmarks on surface meshes (CSV of points, RMSE, win rate)."""

from competition.tasks.landmarks.task import LandmarksTask

__all__ = ["LandmarksTask"]
