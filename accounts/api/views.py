"""REST endpoints for accounts: list and detail with money figures, flatten, and who am I."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import accounts_visible_to, get_account_for_user, get_tradable_account_for_user
from orders import services as order_services
from orders.selectors import value_account, value_accounts
from orders.serializers import AccountSerializer, OrderSerializer


class AccountListApi(generics.ListAPIView):
    serializer_class = AccountSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return accounts_visible_to(self.request.user).order_by("name", "pk")

    def list(self, request: Request, *args, **kwargs) -> Response:  # type: ignore[no-untyped-def]
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(AccountSerializer(value_accounts(page), many=True).data)


class AccountDetailApi(APIView):
    @extend_schema(responses=AccountSerializer)
    def get(self, request: Request, account_id: int) -> Response:
        account = get_account_for_user(user=request.user, account_id=account_id)
        return Response(AccountSerializer(value_account(account)).data)


class AccountFlattenApi(APIView):
    @extend_schema(
        request=None,
        responses={
            202: inline_serializer(
                "FlattenResult", {"canceled": OrderSerializer(many=True), "closing": OrderSerializer(many=True)}
            )
        },
    )
    def post(self, request: Request, account_id: int) -> Response:
        account = get_tradable_account_for_user(user=request.user, account_id=account_id)
        result = order_services.flatten_account(account=account, actor=request.user)
        return Response(
            {
                "canceled": OrderSerializer(result.canceled, many=True).data,
                "closing": OrderSerializer(result.closing, many=True).data,
            },
            status=202,
        )


class MeApi(APIView):
    """Who the caller is; also the cheapest authenticated endpoint (the benchmark's floor)."""

    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "id": serializers.IntegerField(),
                "username": serializers.CharField(),
                "is_staff": serializers.BooleanField(),
            },
        )
    )
    def get(self, request: Request) -> Response:
        user = request.user
        return Response({"id": user.pk, "username": user.get_username(), "is_staff": user.is_staff})
