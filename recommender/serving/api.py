"""GET /api/v1/recommendations/ and POST /api/v1/events/ (DESIGN.md contract)."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from recommender.feedback.events import EventRejected, event_record
from recommender.models import Event, EventType, SlotName
from recommender.serving.recommendations import recommend
from shop.api.serializers import ErrorSerializer, ProductSerializer
from shop.api.views import CSRF_ERROR, ShopApiView
from shop.models import Product
from shop.sessions import visit_key
from shop.throttling import EVENTS, RECOMMENDATIONS


class ReasonSerializer(serializers.Serializer):
    product_id = serializers.IntegerField(help_text="The session's product behind this item.")
    name = serializers.CharField(help_text='Its name, for "Because you viewed <name>".')


class RecommendedItemSerializer(serializers.Serializer):
    product = ProductSerializer()
    position = serializers.IntegerField()
    propensity = serializers.FloatField(
        help_text="Exact probability with which this item was chosen for its position."
    )
    reason = ReasonSerializer(
        allow_null=True,
        help_text="The product of this session (viewed, clicked, in the cart or bought) that "
        "raised this item's score most; null for a session with no such product and for the "
        "popularity fallback.",
    )


class PolicySerializer(serializers.Serializer):
    name = serializers.CharField(help_text="'dqn', or 'popularity' when falling back.")
    version = serializers.IntegerField(allow_null=True)


class RecommendationsApi(ShopApiView):
    # Every answer logs an impression, which clicks can then earn reward on.
    throttle_classes = RECOMMENDATIONS

    class InputSerializer(serializers.Serializer):
        slot = serializers.ChoiceField(choices=SlotName.values)
        # No serializer default: the view falls back to RECOMMENDER_DEFAULT_K (8),
        # which a default=8 here would shadow.
        k = serializers.IntegerField(
            min_value=1,
            max_value=24,
            required=False,
            help_text="Slate size; default RECOMMENDER_DEFAULT_K (8).",
        )
        product_id = serializers.IntegerField(min_value=1, required=False)

        def validate(self, attrs: dict) -> dict:
            if attrs["slot"] == SlotName.PRODUCT and "product_id" not in attrs:
                raise ValidationError({"product_id": "Required when slot is 'product'."})
            return attrs

    class OutputSerializer(serializers.Serializer):
        impression_id = serializers.UUIDField(help_text="Send it with click events.")
        slot = serializers.ChoiceField(choices=SlotName.values)
        policy = PolicySerializer()
        items = RecommendedItemSerializer(many=True)

    @extend_schema(
        parameters=[InputSerializer],
        responses={
            200: OutputSerializer,
            400: OpenApiResponse(
                ErrorSerializer,
                description="A parameter is invalid (unknown slot, k out of range, "
                "product_id missing for the product slot).",
            ),
            404: OpenApiResponse(
                ErrorSerializer, description="No such product, or no longer sold."
            ),
            429: OpenApiResponse(
                ErrorSerializer, description="Too many recommendations; retry later."
            ),
        },
        summary="A logged slate of recommended products for a carousel slot",
    )
    def get(self, request: Request) -> Response:
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        product = None
        if data["slot"] == SlotName.PRODUCT:
            product = get_object_or_404(Product, pk=data["product_id"], is_active=True)
        rec = recommend(
            session_key=visit_key(request.session),
            user_id=request.user.pk if request.user.is_authenticated else None,
            slot=data["slot"],
            k=data.get("k") or settings.RECOMMENDER_DEFAULT_K,
            product_id=product.pk if product else None,
        )
        by_id = {p.pk: (p, reason) for p, reason in zip(rec.products, rec.reasons, strict=True)}
        items = [
            {
                "product": by_id[int(item)][0],
                "position": position,
                "propensity": float(propensity),
                "reason": _reason(by_id[int(item)][1]),
            }
            for position, (item, propensity) in enumerate(
                zip(rec.served.slate.items, rec.served.slate.propensities, strict=True)
            )
            if int(item) in by_id
        ]
        output = {
            "impression_id": rec.impression.pk,
            "slot": data["slot"],
            "policy": {"name": rec.served.policy_name, "version": rec.served.policy_version},
            "items": items,
        }
        return Response(self.OutputSerializer(output, context={"request": request}).data)


def _reason(anchor: Product | None) -> dict | None:
    return None if anchor is None else {"product_id": anchor.pk, "name": anchor.name}


class EventsApi(ShopApiView):
    throttle_classes = EVENTS

    class InputSerializer(serializers.Serializer):
        event_id = serializers.UUIDField(help_text="Client-generated; repeats are idempotent.")
        type = serializers.ChoiceField(
            choices=[EventType.VIEW, EventType.CLICK],
            help_text="add_to_cart and purchase are recorded by the server, never accepted here.",
        )
        product_id = serializers.IntegerField(min_value=1)
        impression_id = serializers.UUIDField(required=False, allow_null=True)

        def validate(self, attrs: dict) -> dict:
            if attrs["type"] == EventType.CLICK and not attrs.get("impression_id"):
                raise ValidationError({"impression_id": "Required for click events."})
            return attrs

    class OutputSerializer(serializers.Serializer):
        event_id = serializers.UUIDField()
        type = serializers.CharField()
        product_id = serializers.IntegerField()
        impression_id = serializers.UUIDField(allow_null=True)
        reward = serializers.FloatField()
        created_at = serializers.DateTimeField()

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            200: OpenApiResponse(OutputSerializer, description="A repeat of a recorded event_id."),
            400: OpenApiResponse(
                ErrorSerializer,
                description="The event is invalid: a field, an unknown product, a click "
                "without its impression, or an event_id used for a different event.",
            ),
            403: CSRF_ERROR,
            429: OpenApiResponse(ErrorSerializer, description="Too many events; retry later."),
        },
        summary="Record a product view or a carousel click",
    )
    def post(self, request: Request) -> Response:
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        product = Product.objects.filter(pk=data["product_id"]).first()
        if product is None:
            raise ValidationError({"product_id": "No such product."})
        try:
            recorded = event_record(
                type=data["type"],
                product=product,
                session_key=visit_key(request.session),
                user_id=request.user.pk if request.user.is_authenticated else None,
                event_id=data["event_id"],
                impression_id=data.get("impression_id"),
                source=Event.Source.CLIENT,
            )
        except EventRejected as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        event = recorded.event
        if recorded.created is False and (
            event.type != data["type"] or event.product_id != product.pk
        ):
            raise ValidationError({"event_id": "This event_id was used for a different event."})
        return Response(
            self.OutputSerializer(event).data,
            status=status.HTTP_201_CREATED if recorded.created else status.HTTP_200_OK,
        )
