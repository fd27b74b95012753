"""A throwaway service, one file per part (docs/architecture.md, "Where to add a new
service"): kind.py (its NB kind), app.py (its app), stage.c (its stage).
tests/e2e/test_new_service.py plugs them into a server, a CLI and an agent."""
