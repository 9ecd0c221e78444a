"""Batch runs from the command line: pre-claiming thousands of units at once."""
