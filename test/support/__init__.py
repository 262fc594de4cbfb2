"""What the tests share: graph helpers, the offline run helpers, the scoring reference.

Imported as ``support.<module>``: ``test/`` is on ``sys.path`` (its ``conftest.py`` puts it
there), and the test modules sit in folders that mirror the package.
"""
