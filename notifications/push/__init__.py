"""Web Push (contract v1.1): subscriptions, preferences, the outbox and its workers.

A Django app of its own (label ``push``), hooked into the rest in a few
places: the publish transaction records owed pushes (``outbox.record``),
the ASGI lifespan starts and stops the worker (``runtime``), and api/
serves the endpoints (api/push_views.py). docs/push.md explains the design.
"""
