"""The line's status for operators: what the status page and its live feed show."""
