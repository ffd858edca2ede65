"""Server-rendered storefront. Views parse input, call one selector or
service and render; a ShopError from a service becomes a form error on the
same page, with 400 (bad input) or 409 (stock changed) as status."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseServerError,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.template import loader
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import requires_csrf_token
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from shop import selectors
from shop.carousels import carousel_for
from shop.exceptions import EmptyCart, InvalidQuantity, ItemNotInCart, ShopError
from shop.forms import CheckoutForm, ListingForm, PageForm, QuantityForm, SearchForm, SignupForm
from shop.models import Category, Order, Product
from shop.services import (
    cart_add_item,
    cart_remove_item,
    cart_update_item,
    order_place,
    user_create,
)
from shop.sessions import cart_for_request, may_view_order, remember_placed_order, visit_key
from shop.throttling import CART, throttled

PRODUCTS_PER_PAGE = 24
ORDERS_PER_PAGE = 10
API_PATH_PREFIX = "/api/"


def _status_for(error: ShopError) -> int:
    return 400 if isinstance(error, InvalidQuantity) else 409


# ---------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------
@require_safe
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "shop/home.html",
        {
            "featured": selectors.product_popular(limit=8),
            "new_arrivals": selectors.product_newest(limit=4),
            # A list: the template reads it twice (the hero's first, the tiles).
            "categories": list(selectors.category_list()),
            "carousel": carousel_for(request, slot="home"),
        },
    )


@require_safe
def category_detail(request: HttpRequest, slug: str) -> HttpResponse:
    category = get_object_or_404(Category, slug=slug)
    listing = ListingForm(request.GET)
    sort = listing.sort_key()
    page = Paginator(
        selectors.product_list(category=category, sort=sort), PRODUCTS_PER_PAGE
    ).get_page(listing.page_number())
    return render(
        request,
        "shop/category.html",
        {
            "category": category,
            "active_category": category.slug,
            "page": page,
            "sort": sort,
            "sorts": selectors.PRODUCT_SORTS,
        },
    )


@require_safe
def search(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET)
    query = form.query()
    page = Paginator(selectors.product_search(query=query), PRODUCTS_PER_PAGE).get_page(
        PageForm(request.GET).page_number()
    )
    return render(request, "shop/search.html", {"query": query, "page": page})


@require_safe
def product_detail(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        product = selectors.product_get(slug=slug)
    except Product.DoesNotExist:
        raise Http404("No such product.") from None
    return _render_product(request, product, form=QuantityForm())


def _render_product(
    request: HttpRequest, product: Product, *, form: QuantityForm, status: int = 200
) -> HttpResponse:
    return render(
        request,
        "shop/product_detail.html",
        {
            "product": product,
            "active_category": product.category.slug,
            "form": form,
            "max_quantity": min(product.stock, form.fields["quantity"].max_value),
            "carousel": carousel_for(request, slot="product", product=product),
        },
        status=status,
    )


# ---------------------------------------------------------------------------
# Cart
# ---------------------------------------------------------------------------
@require_safe
def cart_detail(request: HttpRequest) -> HttpResponse:
    return _render_cart(request)


def _render_cart(
    request: HttpRequest, *, line_errors: dict[int, str] | None = None, status: int = 200
) -> HttpResponse:
    summary = selectors.cart_detail(cart=cart_for_request(request))
    line_errors = line_errors or {}
    return render(
        request,
        "shop/cart.html",
        {
            "summary": summary,
            "lines": [(item, line_errors.get(item.product_id)) for item in summary.items],
            # "Complete your order" means nothing for an empty cart.
            "carousel": carousel_for(request, slot="cart") if summary.items else None,
        },
        status=status,
    )


@require_POST
@throttled(CART)
def cart_add(request: HttpRequest, product_id: int) -> HttpResponse:
    product = get_object_or_404(
        Product.objects.select_related("category"), pk=product_id, is_active=True
    )
    form = QuantityForm(request.POST)
    if not form.is_valid():
        return _render_product(request, product, form=form, status=400)
    try:
        cart_add_item(
            cart=cart_for_request(request),
            product=product,
            quantity=form.cleaned_data["quantity"],
            session_key=visit_key(request.session),
        )
    except ShopError as error:
        form.add_error("quantity", error.message)
        return _render_product(request, product, form=form, status=_status_for(error))
    messages.success(request, f"Added “{product.name}” to your cart.")
    return redirect(_safe_next(request, default=reverse("shop:cart")))


@require_POST
@throttled(CART)
def cart_update(request: HttpRequest, product_id: int) -> HttpResponse:
    product = get_object_or_404(Product, pk=product_id)
    form = QuantityForm(request.POST)
    if not form.is_valid():
        return _render_cart(
            request, line_errors={product.pk: form.errors["quantity"][0]}, status=400
        )
    try:
        cart_update_item(
            cart=cart_for_request(request), product=product, quantity=form.cleaned_data["quantity"]
        )
    except ItemNotInCart:
        messages.info(request, f"“{product.name}” was no longer in your cart.")
    except ShopError as error:
        return _render_cart(
            request, line_errors={product.pk: error.message}, status=_status_for(error)
        )
    return redirect("shop:cart")


@require_POST
@throttled(CART)
def cart_remove(request: HttpRequest, product_id: int) -> HttpResponse:
    product = get_object_or_404(Product, pk=product_id)
    cart_remove_item(
        cart=cart_for_request(request), product=product, session_key=visit_key(request.session)
    )
    messages.success(request, f"Removed “{product.name}” from your cart.")
    return redirect("shop:cart")


# ---------------------------------------------------------------------------
# Checkout and orders
# ---------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@throttled(CART)
def checkout(request: HttpRequest) -> HttpResponse:
    cart = cart_for_request(request)
    status = 200
    if request.method == "POST":
        form = CheckoutForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                placed = order_place(
                    cart=cart,
                    email=data["email"],
                    name=data["name"],
                    address=data["address"],
                    checkout_token=data["checkout_token"],
                    session_key=visit_key(request.session),
                )
            except EmptyCart as error:
                messages.info(request, error.message)
                return redirect("shop:cart")
            except ShopError as error:
                form.add_error(None, error.message)
                status = _status_for(error)
            else:
                remember_placed_order(request, placed.order)
                return redirect("shop:order_confirmation", pk=placed.order.pk)
        else:
            status = 400
    else:
        form = CheckoutForm(
            initial={
                **selectors.checkout_initial(user=request.user),
                "checkout_token": cart.checkout_token,
            }
        )
    summary = selectors.cart_detail(cart=cart)
    if not summary.items:
        messages.info(request, "Your cart is empty.")
        return redirect("shop:cart")
    return render(request, "shop/checkout.html", {"form": form, "summary": summary}, status=status)


@require_safe
def order_confirmation(request: HttpRequest, pk: int) -> HttpResponse:
    order = get_object_or_404(selectors.order_detail_queryset(), pk=pk)
    if not may_view_order(request, order):
        raise Http404("No such order.")
    return render(request, "shop/order_confirmation.html", {"order": order})


@login_required
@require_safe
def order_history(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.order_list_for_user(user=request.user), ORDERS_PER_PAGE).get_page(
        PageForm(request.GET).page_number()
    )
    return render(request, "shop/order_history.html", {"page": page})


@login_required
@require_safe
def order_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        order = selectors.order_get_for_user(user=request.user, pk=pk)
    except Order.DoesNotExist:
        raise Http404("No such order.") from None
    return render(request, "shop/order_detail.html", {"order": order})


# ---------------------------------------------------------------------------
# Accounts (log in and log out are Django's auth views, see urls.py)
# ---------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("shop:home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_create(
            username=form.cleaned_data["username"],
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
        )
        # Logging in merges the cart the shopper filled as a guest.
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome! Your account is ready.")
        return redirect(_safe_next(request, default=reverse("shop:home")))
    return render(
        request,
        "registration/signup.html",
        {"form": form, "next": request.GET.get("next", "")},
        status=400 if form.is_bound else 200,
    )


def _safe_next(request: HttpRequest, *, default: str) -> str:
    """The `next` URL a form carried, if it points into this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


# ---------------------------------------------------------------------------
# Error pages (config/urls.py: handler404, handler500)
# ---------------------------------------------------------------------------
def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(API_PATH_PREFIX):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return render(request, "404.html", status=404)


@requires_csrf_token
def server_error(request: HttpRequest) -> HttpResponse:
    # Something already failed (maybe the database): render without the
    # request context, so no context processor or query runs here.
    if request.path.startswith(API_PATH_PREFIX):
        return JsonResponse({"detail": "Server error.", "code": "server_error"}, status=500)
    return HttpResponseServerError(loader.get_template("500.html").render())
