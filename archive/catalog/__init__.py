"""Catalog views and search as the CLI and API present them."""
