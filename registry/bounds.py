"""The largest integers the catalog's columns hold, on SQLite and PostgreSQL alike.

A number from outside (a CLI option, a query parameter, a cursor, a manifest) past these names no row and limits
nothing more, but reaching a query it is an OverflowError (SQLite) or a DataError (PostgreSQL), a traceback rather
than an answer; so it is checked against them where it comes in. Imports nothing: the CLI's option types use them
before the catalog is loaded.
"""

# sizes, counts and LIMITs: signed 64-bit (SQLite INTEGER, PostgreSQL BIGINT)
CATALOG_INT_MAX = 2**63 - 1
# row ids are INTEGER primary keys: 64-bit in SQLite but 32-bit in PostgreSQL ("integer out of range")
ROW_ID_MAX = 2**31 - 1
