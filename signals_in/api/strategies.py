"""REST endpoints for strategies, their webhook tokens and subscriptions: parse, call one service, render.

A trader sees and changes only the strategies they own, and subscribes only accounts they may
trade; staff see all. A webhook token's secret is in the answer to issuing it and nowhere else.
"""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import get_account_for_user
from config.errors import NotFoundError
from signals_in import strategies as services
from signals_in.api.strategy_serializers import (
    IssuedTokenSerializer,
    StrategyInputSerializer,
    StrategySerializer,
    SubscriptionChangeSerializer,
    SubscriptionInputSerializer,
    SubscriptionSerializer,
    TokenInputSerializer,
    WebhookTokenSerializer,
)
from signals_in.models import TRADINGVIEW_IPS, Strategy


class StrategyListCreateApi(generics.ListAPIView):
    serializer_class = StrategySerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return services.strategies_visible_to(self.request.user).order_by("name", "pk")

    @extend_schema(request=StrategyInputSerializer, responses={201: StrategySerializer})
    def post(self, request: Request) -> Response:
        data = StrategyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        strategy = services.create_strategy(
            name=fields["name"],
            owner=request.user,
            description=fields["description"],
            is_enabled=fields["is_enabled"],
            rate_limit_per_minute=fields["rate_limit_per_minute"],
            allowed_ips=list(TRADINGVIEW_IPS) if fields["limit_to_tradingview"] else fields["allowed_ips"],
            passphrase=fields["passphrase"],
        )
        strategy = services.get_strategy_for_user(user=request.user, strategy_id=strategy.pk)
        return Response(StrategySerializer(strategy).data, status=201)


class StrategyDetailApi(APIView):
    @extend_schema(responses=StrategySerializer)
    def get(self, request: Request, strategy_id: int) -> Response:
        return Response(
            StrategySerializer(services.get_strategy_for_user(user=request.user, strategy_id=strategy_id)).data
        )

    @extend_schema(request=StrategyInputSerializer, responses=StrategySerializer)
    def patch(self, request: Request, strategy_id: int) -> Response:
        strategy = services.get_strategy_for_user(user=request.user, strategy_id=strategy_id)
        data = StrategyInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        services.change_strategy(strategy=strategy, **data.validated_data)
        return Response(
            StrategySerializer(services.get_strategy_for_user(user=request.user, strategy_id=strategy_id)).data
        )


class StrategyTokenCreateApi(APIView):
    @extend_schema(request=TokenInputSerializer, responses={201: IssuedTokenSerializer})
    def post(self, request: Request, strategy_id: int) -> Response:
        """A new webhook token. Its secret and URL are in this answer only: store them now."""
        strategy = services.get_strategy_for_user(user=request.user, strategy_id=strategy_id)
        data = TokenInputSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        issued = services.issue_webhook_token(strategy=strategy, label=data.validated_data["label"])
        body = {
            **WebhookTokenSerializer(issued.token).data,
            "token": issued.raw,
            "url": request.build_absolute_uri(issued.path),
        }
        return Response(IssuedTokenSerializer(body).data, status=201, headers={"Cache-Control": "no-store"})


class StrategyTokenRevokeApi(APIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, strategy_id: int, token_id: int) -> Response:
        strategy = services.get_strategy_for_user(user=request.user, strategy_id=strategy_id)
        token = strategy.tokens.filter(pk=token_id).first()
        if token is None:
            raise NotFoundError(f"No token {token_id} on strategy {strategy.name}.", code="token_not_found")
        services.revoke_webhook_token(token=token)
        return Response(status=204)


class SubscriptionListCreateApi(generics.ListAPIView):
    serializer_class = SubscriptionSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return services.subscriptions_visible_to(self.request.user).order_by("strategy__name", "account__name", "pk")

    @extend_schema(request=SubscriptionInputSerializer, responses={201: SubscriptionSerializer})
    def post(self, request: Request) -> Response:
        data = SubscriptionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        strategy = _strategy_to_subscribe(request, fields.pop("strategy"))
        account = get_account_for_user(user=request.user, account_id=fields.pop("account"))
        subscription = services.subscribe_account(actor=request.user, strategy=strategy, account=account, **fields)
        return Response(SubscriptionSerializer(subscription).data, status=201)


def _strategy_to_subscribe(request: Request, strategy_id: int) -> Strategy:
    # Only strategies the caller may see: another trader's strategy is "not found", not "forbidden".
    return services.get_strategy_for_user(user=request.user, strategy_id=strategy_id)


class SubscriptionDetailApi(APIView):
    @extend_schema(responses=SubscriptionSerializer)
    def get(self, request: Request, subscription_id: int) -> Response:
        subscription = services.get_subscription_for_user(user=request.user, subscription_id=subscription_id)
        return Response(SubscriptionSerializer(subscription).data)

    @extend_schema(request=SubscriptionChangeSerializer, responses=SubscriptionSerializer)
    def patch(self, request: Request, subscription_id: int) -> Response:
        subscription = services.get_subscription_for_user(user=request.user, subscription_id=subscription_id)
        data = SubscriptionChangeSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        services.update_subscription(actor=request.user, subscription=subscription, **data.validated_data)
        return Response(SubscriptionSerializer(subscription).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, subscription_id: int) -> Response:
        subscription = services.get_subscription_for_user(user=request.user, subscription_id=subscription_id)
        services.unsubscribe(actor=request.user, subscription=subscription)
        return Response(status=204)


urlpatterns = [
    path("strategies/", StrategyListCreateApi.as_view(), name="strategy-list"),
    path("strategies/<int:strategy_id>/", StrategyDetailApi.as_view(), name="strategy-detail"),
    path("strategies/<int:strategy_id>/tokens/", StrategyTokenCreateApi.as_view(), name="strategy-token-create"),
    path(
        "strategies/<int:strategy_id>/tokens/<int:token_id>/",
        StrategyTokenRevokeApi.as_view(),
        name="strategy-token-revoke",
    ),
    path("subscriptions/", SubscriptionListCreateApi.as_view(), name="subscription-list"),
    path("subscriptions/<int:subscription_id>/", SubscriptionDetailApi.as_view(), name="subscription-detail"),
]
