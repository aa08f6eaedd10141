"""The `database_url` fixtures hand out a working database on each backend (both must run in CI), and the
MODELARC_* environment guard catches leaks."""


from sqlalchemy import create_engine, text


def test_database_url_accepts_a_query(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_each_test_gets_an_empty_database(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            # A table left by another test (or another xdist worker) would make this fail.
            connection.execute(text("CREATE TABLE fixture_probe (id INTEGER PRIMARY KEY)"))
    finally:
        engine.dispose()


def test_module_database_url_accepts_a_query(module_database_url: str) -> None:
    engine = create_engine(module_database_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
