"""kukectl: the command-line client of the kukeon API."""
