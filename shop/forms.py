"""HTML forms: they parse and validate input; the rules themselves live in
services (quantities, stock), so forms only make sure the types are right."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from shop.exceptions import InvalidQuantity
from shop.models import MAX_LINE_QUANTITY
from shop.selectors import DEFAULT_SORT, PRODUCT_SORTS, SEARCH_MAX_LENGTH

QUANTITY_MESSAGE = InvalidQuantity.default_message


class QuantityForm(forms.Form):
    quantity = forms.IntegerField(
        min_value=1,
        max_value=MAX_LINE_QUANTITY,
        initial=1,
        error_messages={
            "required": QUANTITY_MESSAGE,
            "invalid": QUANTITY_MESSAGE,
            "min_value": QUANTITY_MESSAGE,
            "max_value": QUANTITY_MESSAGE,
        },
    )


class PageForm(forms.Form):
    """The page of a paginated list; a bad value means page 1 (a hand-edited
    URL should still show something, not an error)."""

    page = forms.IntegerField(min_value=1, required=False)

    def page_number(self) -> int:
        return (self.cleaned_data["page"] or 1) if self.is_valid() else 1


class ListingForm(PageForm):
    """Sort and page of a product listing; an unknown sort means the default."""

    sort = forms.ChoiceField(
        choices=[(key, label) for key, (label, _) in PRODUCT_SORTS.items()], required=False
    )

    def sort_key(self) -> str:
        return (self.cleaned_data["sort"] or DEFAULT_SORT) if self.is_valid() else DEFAULT_SORT


class SearchForm(forms.Form):
    q = forms.CharField(required=False, strip=True)

    def query(self) -> str:
        # Over-long input is cut, not refused: a shopper pasting a paragraph gets results.
        return self.cleaned_data["q"][:SEARCH_MAX_LENGTH] if self.is_valid() else ""


class CheckoutForm(forms.Form):
    email = forms.EmailField(label="E-mail", max_length=254)
    name = forms.CharField(label="Full name", max_length=200)
    address = forms.CharField(
        label="Delivery address",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "street-address"}),
    )
    # Identifies this checkout attempt: submitting the page twice places one order.
    checkout_token = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].widget.attrs["autocomplete"] = "email"
        self.fields["name"].widget.attrs["autocomplete"] = "name"


class SignupForm(UserCreationForm):
    email = forms.EmailField(label="E-mail", max_length=254)

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")
