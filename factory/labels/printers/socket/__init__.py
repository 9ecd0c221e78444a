"""A printer's raw port (Zebra's 9100, "socket" or "JetDirect" printing): ZPL straight over TCP,
no CUPS. See `printer.py` for what "printed" means there."""
