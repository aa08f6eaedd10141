"""Loading archived tensors into torch, recorded runs, and lockfiles for reproducible studies."""
