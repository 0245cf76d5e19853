"""What a user reads in a terminal or a log while and after a search runs.

    live.py    the live view of a running search (Rich on a terminal, plain lines elsewhere)
    tables.py  the results, status and Pima phase tables
"""
