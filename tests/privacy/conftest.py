from tests.audit.conftest import db_url, store  # noqa: F401  (the same two backends)
