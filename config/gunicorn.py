"""gunicorn's settings for the store (``gunicorn -c config/gunicorn.py``: the
Dockerfile, docker-compose.yml and bench.load start it so).

The application is loaded once, in the master, and the workers are forked
from it: they share the master's memory for every module they all import
instead of each importing its own. With the recommender's carousels on,
that includes torch and the RL core, the largest part of a worker's memory
(``recommender.serving.carousels.preload``). No torch operation runs in the
master (after one, forked children hang in OpenMP: docs/design.md); each
worker loads the model itself, when it first serves a carousel.

The code is the master's: deploy a new release by restarting gunicorn (or
its USR2 upgrade), not with HUP, which forks new workers from the old code.
"""

import gc

preload_app = True


def when_ready(server):
    """In the master, once the application is loaded, before the first fork."""
    from django.apps import apps
    from django.db import connections

    if apps.is_installed("recommender"):
        from recommender.serving.carousels import preload

        preload()
    # Nothing may hold a connection the workers would inherit.
    connections.close_all()
    # What is alive now lives as long as the master: out of the collector's
    # sight, whose passes in a worker would otherwise write to (and so copy)
    # every shared page holding such objects.
    gc.freeze()
