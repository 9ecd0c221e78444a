"""Talking to units on the line: serial ports, the unit drivers, and the provisioning pipeline."""
