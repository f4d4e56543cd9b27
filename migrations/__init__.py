"""featurestore's Alembic migration scripts (installed as ``featurestore.migrations``)."""
