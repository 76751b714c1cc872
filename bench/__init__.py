"""Load and latency benchmark for the notification push service (``python -m bench``).

See bench/README.md.
"""
