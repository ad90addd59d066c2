"""newsletter: issue files to responsive, inlined HTML email, delivered weekly over SMTP."""

__version__ = "0.1.0"
