"""REST endpoints for orders, positions and fills: parse, call one service or selector, render."""

from decimal import Decimal
from typing import Any

import django_filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import get_tradable_account_for_user
from config.api.fields import LevelInputField, PriceInputField, QuantityField, StrictSerializer
from config.errors import ConflictError, DomainError, UnprocessableError
from orders import groups, selectors, services
from orders.domain import (
    BracketSpec,
    Level,
    OrderIntent,
    OrderSide,
    OrderSource,
    OrderStatus,
    OrderType,
    PositionEffect,
    TimeInForce,
)
from orders.models import Fill, Order, Position
from orders.serializers import (
    FillSerializer,
    OrderDetailSerializer,
    OrderGroupSerializer,
    OrderSerializer,
    PositionSerializer,
)

IDEMPOTENCY_KEY_MAX_LENGTH = 200


class OrderFilter(django_filters.FilterSet):
    account = django_filters.NumberFilter(field_name="account_id")
    status = django_filters.MultipleChoiceFilter(choices=OrderStatus.choices)

    class Meta:
        model = Order
        fields = ["account", "status"]


HUMAN_SOURCES = [(OrderSource.API, "REST API"), (OrderSource.TICKET, "Order ticket")]


class OrderTermsSerializer(StrictSerializer):
    """One order's terms (the body of POST /orders/, and each leg of an OCO pair)."""

    symbol = serializers.CharField(max_length=32)
    side = serializers.ChoiceField(choices=OrderSide.choices)
    quantity = QuantityField()
    type = serializers.ChoiceField(choices=OrderType.choices, default=OrderType.MARKET)
    limit_price = PriceInputField(required=False, allow_null=True, default=None)
    stop_price = PriceInputField(required=False, allow_null=True, default=None)
    trail_amount = PriceInputField(
        required=False, allow_null=True, default=None, help_text="Trailing stops: how far the stop follows."
    )
    time_in_force = serializers.ChoiceField(choices=TimeInForce.choices, default=TimeInForce.DAY)
    position_effect = serializers.ChoiceField(
        choices=PositionEffect.choices,
        default=PositionEffect.AUTO,
        help_text="auto: open, add or reduce, never through flat; reduce: reduce only; reverse: may go through flat.",
    )


def intent_from(fields: dict[str, Any]) -> OrderIntent:
    """An intent from the validated fields of an OrderTermsSerializer."""
    return OrderIntent(
        symbol=fields["symbol"],
        side=OrderSide(fields["side"]),
        quantity=fields["quantity"],
        order_type=OrderType(fields["type"]),
        time_in_force=TimeInForce(fields["time_in_force"]),
        limit_price=fields["limit_price"],
        stop_price=fields["stop_price"],
        trail_amount=fields["trail_amount"],
        position_effect=PositionEffect(fields["position_effect"]),
    )


def _level(value: tuple[Decimal | None, int | None] | None) -> Level | None:
    if value is None:
        return None
    price, ticks = value
    return Level(price=price, ticks=ticks)


class OrderInputSerializer(OrderTermsSerializer):
    account = serializers.IntegerField(error_messages={"invalid": "account must be an account id (a number)."})
    stop_loss = LevelInputField(required=False, allow_null=True, default=None)
    take_profit = LevelInputField(required=False, allow_null=True, default=None)
    plan = serializers.JSONField(
        required=False,
        allow_null=True,
        default=None,
        help_text="A position plan ({} for the defaults) started when the entry fills; needs a stop_loss.",
    )
    source = serializers.ChoiceField(choices=HUMAN_SOURCES, default=OrderSource.API)

    def bracket(self) -> BracketSpec | None:
        stop_loss, take_profit = (_level(self.validated_data[f]) for f in ("stop_loss", "take_profit"))
        if stop_loss is None and take_profit is None:
            return None
        return BracketSpec(stop_loss=stop_loss, take_profit=take_profit)


def denial_error(order: Order) -> DomainError:
    """A denied order as an API error: account-state denials are conflicts (409), rules 422."""
    state_rules = {"trading_state", "account_status", "reconciliation"}
    # The account's state decides first: a halted account answers 409 account_halted even when
    # the order also breaks other rules (all denials are still listed).
    state = [d for d in order.denials or [] if d["rule"] in state_rules]
    if state:
        error: DomainError = ConflictError(state[-1]["detail"], code=state[-1]["code"])
    else:
        error = UnprocessableError("The order breaks the account's risk rules.", code="risk_denied")
    error.extra = {"denials": order.denials, "order": order.pk}  # type: ignore[attr-defined]
    return error


class OrderListCreateApi(generics.ListAPIView):
    serializer_class = OrderSerializer
    filterset_class = OrderFilter

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.orders_visible_to(self.request.user)

    @extend_schema(
        request=OrderInputSerializer,
        responses={201: OrderSerializer, 200: OrderSerializer},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    def post(self, request: Request) -> Response:
        data = OrderInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        account = get_tradable_account_for_user(user=request.user, account_id=fields["account"])
        outcome = services.submit_order(
            account=account,
            intent=intent_from(fields),
            bracket=data.bracket(),
            plan=fields["plan"],
            source=OrderSource(fields["source"]),
            created_by=request.user,
            client_order_id=_client_order_id_from_key(request),
        )
        if outcome.order.status == OrderStatus.DENIED:
            raise denial_error(outcome.order)
        # The new order as stored; GET /orders/{id}/ adds its event history.
        return Response(OrderSerializer(outcome.order).data, status=201 if outcome.created else 200)


def _client_order_id_from_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not key.strip() or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH or not key.isprintable():
        raise DomainError(
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable characters.",
            code="invalid_idempotency_key",
            field="Idempotency-Key",
        )
    # Scoped to the user: two users can never collide, or learn of each other's orders, by key.
    return services.client_order_id_for(scope=f"user:{request.user.pk}", key=key)


class OrderChangeSerializer(StrictSerializer):
    quantity = QuantityField(required=False, allow_null=True, default=None)
    limit_price = PriceInputField(required=False, allow_null=True, default=None)
    stop_price = PriceInputField(required=False, allow_null=True, default=None)


class OrderDetailApi(APIView):
    @extend_schema(responses=OrderDetailSerializer)
    def get(self, request: Request, order_id: int) -> Response:
        order = selectors.get_order_for_user(user=request.user, order_id=order_id)
        return Response(OrderDetailSerializer(order).data)

    @extend_schema(request=OrderChangeSerializer, responses={202: OrderDetailSerializer})
    def patch(self, request: Request, order_id: int) -> Response:
        """Change quantity and/or prices through the broker's modify. The order shows the change
        in `pending_change` until the broker confirms; only then do its terms change."""
        data = OrderChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = selectors.get_order_for_user(user=request.user, order_id=order_id)
        get_tradable_account_for_user(user=request.user, account_id=order.account_id)
        services.modify_order(order=order, change=services.OrderChange(**data.validated_data), actor=request.user)
        order = selectors.get_order_for_user(user=request.user, order_id=order_id)
        return Response(OrderDetailSerializer(order).data, status=202)


class OcoInputSerializer(StrictSerializer):
    account = serializers.IntegerField(error_messages={"invalid": "account must be an account id (a number)."})
    legs = OrderTermsSerializer(many=True)
    source = serializers.ChoiceField(choices=HUMAN_SOURCES, default=OrderSource.API)

    def validate_legs(self, legs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(legs) != 2:
            raise serializers.ValidationError("An OCO pair has exactly two legs.", code="oco_needs_two_legs")
        return legs


class OcoCreateApi(APIView):
    @extend_schema(request=OcoInputSerializer, responses={201: OrderGroupSerializer})
    def post(self, request: Request) -> Response:
        """Two orders, one cancels the other: when either fills (even partly) the other is cancelled."""
        data = OcoInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        account = get_tradable_account_for_user(user=request.user, account_id=fields["account"])
        first, second = (intent_from(leg) for leg in fields["legs"])
        group = groups.submit_oco(
            account=account, intents=(first, second), source=OrderSource(fields["source"]), created_by=request.user
        )
        denied = group.legs.filter(status=OrderStatus.DENIED).first()
        if denied is not None:
            raise denial_error(denied)
        group.legs_in_order = list(group.legs.select_related("instrument", "created_by").order_by("pk"))
        return Response(OrderGroupSerializer(group).data, status=201)


class OrderCancelApi(APIView):
    @extend_schema(request=None, responses=OrderDetailSerializer)
    def post(self, request: Request, order_id: int) -> Response:
        order = selectors.get_order_for_user(user=request.user, order_id=order_id)
        get_tradable_account_for_user(user=request.user, account_id=order.account_id)
        services.request_cancel(order=order, actor=request.user)
        return Response(OrderDetailSerializer(selectors.get_order_for_user(user=request.user, order_id=order_id)).data)


class PositionFilter(django_filters.FilterSet):
    account = django_filters.NumberFilter(field_name="account_id")

    class Meta:
        model = Position
        fields = ["account"]


@extend_schema(
    parameters=[OpenApiParameter("include_closed", bool, description="Also list flat positions (default: open only).")]
)
class PositionListApi(generics.ListAPIView):
    serializer_class = PositionSerializer
    filterset_class = PositionFilter

    def get_queryset(self):  # type: ignore[no-untyped-def]
        positions = selectors.positions_visible_to(self.request.user).order_by("account_id", "instrument__symbol")
        if self.request.query_params.get("include_closed", "").lower() not in ("1", "true", "yes"):
            positions = positions.open()
        return positions

    def list(self, request: Request, *args, **kwargs) -> Response:  # type: ignore[no-untyped-def]
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(PositionSerializer(selectors.mark_positions(page), many=True).data)


class PositionCloseInputSerializer(StrictSerializer):
    quantity = QuantityField(required=False, allow_null=True, default=None)


class PositionCloseApi(APIView):
    @extend_schema(request=PositionCloseInputSerializer, responses={202: OrderDetailSerializer})
    def post(self, request: Request, position_id: int) -> Response:
        data = PositionCloseInputSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        position = selectors.get_position_for_user(user=request.user, position_id=position_id)
        get_tradable_account_for_user(user=request.user, account_id=position.account_id)
        order = services.close_position(position=position, quantity=data.validated_data["quantity"], actor=request.user)
        return Response(
            OrderDetailSerializer(selectors.get_order_for_user(user=request.user, order_id=order.pk)).data, status=202
        )


class FillFilter(django_filters.FilterSet):
    account = django_filters.NumberFilter(field_name="account_id")
    order = django_filters.NumberFilter(field_name="order_id")
    trade_date = django_filters.DateFilter()

    class Meta:
        model = Fill
        fields = ["account", "order", "trade_date"]


class FillListApi(generics.ListAPIView):
    serializer_class = FillSerializer
    filterset_class = FillFilter

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.fills_visible_to(self.request.user)
