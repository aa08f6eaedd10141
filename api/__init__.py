"""FastAPI app: REST v1, Hub-compatible routes and the HTML catalog (issue 5)."""
