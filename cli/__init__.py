"""The ``modelarc`` command line: parses input, calls the archive, formats text or JSON."""
