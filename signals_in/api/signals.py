"""REST endpoints for signals and what each did on every account: parse, call a selector, render."""

import django_filters
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from signals_in import selectors
from signals_in.api.signal_serializers import SignalDetailSerializer, SignalSerializer
from signals_in.models import Signal, SignalStatus


class SignalFilter(django_filters.FilterSet):
    strategy = django_filters.NumberFilter(field_name="strategy_id")
    status = django_filters.MultipleChoiceFilter(choices=SignalStatus.choices)
    since = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")

    class Meta:
        model = Signal
        fields = ["strategy", "status", "since"]


class SignalListApi(generics.ListAPIView):
    """Signals of your strategies and signals that reached your accounts, newest first."""

    serializer_class = SignalSerializer
    filterset_class = SignalFilter

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.signals_visible_to(self.request.user).order_by("-received_at", "-pk")


class SignalDetailApi(APIView):
    @extend_schema(responses=SignalDetailSerializer)
    def get(self, request: Request, signal_id: int) -> Response:
        """The signal and its outcome on each account you can see: status, reason, order, latency."""
        signal = selectors.get_signal_for_user(user=request.user, signal_id=signal_id)
        return Response(SignalDetailSerializer(signal).data)


urlpatterns = [
    path("signals/", SignalListApi.as_view(), name="signal-list"),
    path("signals/<int:signal_id>/", SignalDetailApi.as_view(), name="signal-detail"),
]
