"""The factory station: serialize, write, label, register and journal every unit off the line."""

__version__ = "0.1.0"
