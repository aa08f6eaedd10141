"""The largest integers the catalog's columns hold, and the text and JSON they cannot, on SQLite and PostgreSQL alike.

A number from outside (a CLI option, a query parameter, a cursor, a manifest) past these names no row and limits
nothing more, but reaching a query it is an OverflowError (SQLite) or a DataError (PostgreSQL), a traceback rather
than an answer; so it is checked against them where it comes in. Imports nothing of modelarc: the CLI's option types
use them before the catalog is loaded.

Text is bounded by what PostgreSQL stores: no text or JSON column holds NUL (U+0000), and a JSON column holds no NaN
or Infinity. SQLite stores both, but a catalog must move between the two (``rebuild-catalog``), so both refuse them.
Neither stores a lone UTF-16 surrogate (JSON's ``"\\ud800"``): text reaches both, and the catalog records in the store,
as UTF-8, which has no encoding for one.
"""

import math
import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins an escaped pair into its character

# sizes, counts and LIMITs: signed 64-bit (SQLite INTEGER, PostgreSQL BIGINT)
CATALOG_INT_MAX = 2**63 - 1
# row ids are INTEGER primary keys: 64-bit in SQLite but 32-bit in PostgreSQL ("integer out of range")
ROW_ID_MAX = 2**31 - 1


def catalog_value_problem(value: object) -> str | None:
    """What in ``value`` (text, or a parsed JSON document: keys included) no catalog column can hold, or ``None``.

    Iterative, so a document nested as deeply as the JSON parser allows is walked without a RecursionError.

    >>> catalog_value_problem({"license": "mit\\x00"})
    'a NUL character (\\u0000)'
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "a NUL character (\\u0000)"
            if _LONE_SURROGATE.search(item):
                return "a lone UTF-16 surrogate (an escape like \\ud800, not a character)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "a number that is not finite (NaN or Infinity)"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None
