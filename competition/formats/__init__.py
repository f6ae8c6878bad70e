"""Readers and writers of the file formats people download and submit (pure, bytes in)."""
