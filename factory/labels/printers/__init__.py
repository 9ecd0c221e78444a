"""Label printers: one package or module per printer language and transport (CUPS today),
each behind `interface.LabelPrinter`, chosen by the config's printer kind in `kinds.py`."""
