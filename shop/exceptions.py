"""Domain errors raised by shop services. Each carries a message fit to show a
shopper; the HTML views turn them into form errors and the API maps them to
status codes (shop/api/exceptions.py), so neither re-words the rule."""

from __future__ import annotations

from dataclasses import dataclass

from shop.models import MAX_LINE_QUANTITY


class ShopError(Exception):
    """Base class: `message` is safe and meant to be shown to the shopper."""

    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidQuantity(ShopError):
    default_message = f"Quantity must be a whole number between 1 and {MAX_LINE_QUANTITY}."


class ProductUnavailable(ShopError):
    default_message = "This product is no longer available."


class ItemNotInCart(ShopError):
    default_message = "This product is not in your cart."


class EmptyCart(ShopError):
    default_message = "Your cart is empty."


class CheckoutExpired(ShopError):
    default_message = "This checkout is no longer valid: please review your cart and try again."


@dataclass(frozen=True)
class Shortage:
    """A cart line that asks for more units than the store has."""

    product_id: int
    name: str
    requested: int
    available: int

    def describe(self) -> str:
        if self.available <= 0:
            return f"“{self.name}” is out of stock."
        return f"Only {self.available} of “{self.name}” left in stock (you asked for {self.requested})."


class OutOfStock(ShopError):
    def __init__(self, shortages: list[Shortage]) -> None:
        self.shortages = shortages
        super().__init__(" ".join(shortage.describe() for shortage in shortages))
