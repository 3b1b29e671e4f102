"""REST endpoints for risk: an account's limits and headroom, violations, halt and resume."""

import django_filters
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import TradingAccount
from accounts.selectors import get_account_for_user
from config.api.fields import StrictSerializer
from risk import selectors, services
from risk.api.serializers import risk_payload
from risk.domain import RiskRule
from risk.models import Violation
from risk.serializers import ViolationSerializer


class AccountRiskApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, account_id: int) -> Response:
        account = get_account_for_user(user=request.user, account_id=account_id)
        assessment = selectors.assess_account(account)
        evaluation = selectors.evaluation_for(assessment).as_dict()
        return Response(risk_payload(assessment, evaluation=evaluation, metrics=selectors.metrics_for(assessment)))


class ViolationFilter(django_filters.FilterSet):
    account = django_filters.NumberFilter(field_name="account_id")
    rule = django_filters.ChoiceFilter(choices=RiskRule.choices)
    trade_date = django_filters.DateFilter()

    class Meta:
        model = Violation
        fields = ["account", "rule", "trade_date"]


class ViolationListApi(generics.ListAPIView):
    serializer_class = ViolationSerializer
    filterset_class = ViolationFilter

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.violations_visible_to(self.request.user)


class ReasonSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class HaltReasonSerializer(StrictSerializer):
    reason = serializers.CharField(
        max_length=300, error_messages={"required": "Say why the account is halted (reason)."}
    )


class AccountHaltApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=HaltReasonSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, account_id: int) -> Response:
        data = HaltReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = get_account_for_user(user=request.user, account_id=account_id)
        account = services.halt_account(account=account, reason=data.validated_data["reason"], actor=request.user)
        return Response(_state(account))


class AccountResumeApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=ReasonSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, account_id: int) -> Response:
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = get_account_for_user(user=request.user, account_id=account_id)
        account = services.resume_account(account=account, reason=data.validated_data["reason"], actor=request.user)
        return Response(_state(account))


def _state(account: TradingAccount) -> dict[str, object]:
    return {
        "account": account.pk,
        "status": account.status,
        "trading_state": account.trading_state,
        "trading_state_reason": account.trading_state_reason,
    }
