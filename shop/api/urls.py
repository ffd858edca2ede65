"""The shop's part of /api/v1/ (see DESIGN.md, HTTP API contract)."""

from django.urls import path

from shop.api import views

app_name = "shop_api"

urlpatterns = [
    path("categories/", views.CategoryListApi.as_view(), name="category_list"),
    path("products/", views.ProductListApi.as_view(), name="product_list"),
    path("products/<int:product_id>/", views.ProductDetailApi.as_view(), name="product_detail"),
    path("cart/", views.CartDetailApi.as_view(), name="cart"),
    path("cart/items/", views.CartItemAddApi.as_view(), name="cart_item_add"),
    path("cart/items/<int:product_id>/", views.CartItemApi.as_view(), name="cart_item"),
    path("checkout/", views.CheckoutApi.as_view(), name="checkout"),
]
