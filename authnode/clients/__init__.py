"""Factories for the shared servers: Redis, MongoDB and PostgreSQL (the job queue)."""
