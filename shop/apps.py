from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = "Shop"

    def ready(self) -> None:
        from django.core.servers.basehttp import WSGIRequestHandler

        from shop import receivers  # noqa: F401  (connects the signal receivers)

        # Django's development server (`make demo`, and the test suite's live
        # server, whose handler inherits this) writes a response's headers and
        # body in separate sends. With Nagle's algorithm on, the body waits for
        # the client's delayed ACK of the headers: a stall of tens of milliseconds
        # on every request over a kept-alive connection, which simulated shoppers
        # driving the demo (simulate_traffic) paid on each page. gunicorn, which
        # serves production, is not affected.
        WSGIRequestHandler.disable_nagle_algorithm = True
