"""Development services: embedded PostgreSQL and Redis, and the launcher that runs Keyflow."""
