"""Landmark imaging: rigid Procrustes fits, rendered surface patches around landmark estimates,
and patch sets written for training elsewhere."""
