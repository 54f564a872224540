"""rbcflow: label-free classification of red blood cells from high-speed microflow video."""

__version__ = "0.1.0"
