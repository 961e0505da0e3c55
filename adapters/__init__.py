"""The adapter SDK: what a bank, payment institution or insurer implements to plug into the hub.

An adapter is a translator plus a manifest; the hub owns I/O, persistence, retries and events.
Nothing in this package imports Django or the hub's models.
"""
