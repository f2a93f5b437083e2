"""vidim: turn an instant message into a video conference (sans-IO SIP library)."""

__version__ = "0.1.0"
