"""Alembic revisions, one file each (``NNNN_slug.py``), oldest first."""
