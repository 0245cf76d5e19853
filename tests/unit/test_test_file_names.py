"""The test folders have no __init__.py, so pytest imports each test file by its base name: two
files with the same name in different tiers stop the whole run at collection ("import file
mismatch"). Every test file's name must be unique across tests/."""

from collections import Counter
from pathlib import Path


def test_every_test_file_name_is_unique_across_the_tiers():
    tests = Path(__file__).resolve().parents[1]
    names = Counter(path.name for path in tests.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
