"""REST endpoints for instruments and the paper venue's price control."""

from django.conf import settings
from django.http import Http404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers.models import Instrument
from brokers.paper import feed
from brokers.selectors import resolve_instrument
from config.api.fields import PriceInputField, StrictSerializer


class InstrumentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    symbol = serializers.CharField()
    root = serializers.CharField()
    description = serializers.CharField()
    exchange = serializers.CharField()
    asset_class = serializers.CharField()
    tick_size = serializers.DecimalField(max_digits=20, decimal_places=8, normalize_output=True)
    tick_value = serializers.DecimalField(max_digits=14, decimal_places=4, normalize_output=True)
    point_value = serializers.DecimalField(max_digits=20, decimal_places=4, normalize_output=True)
    currency = serializers.CharField()
    size_class = serializers.CharField()
    mini_equivalent = serializers.DecimalField(max_digits=6, decimal_places=3, normalize_output=True)
    trading_hours = serializers.CharField()
    expires_on = serializers.DateField(allow_null=True)


class InstrumentListApi(generics.ListAPIView):
    serializer_class = InstrumentSerializer
    queryset = Instrument.objects.tradable().order_by("root", "expires_on")
    filterset_fields = ["root", "asset_class"]


class SimPriceInputSerializer(StrictSerializer):
    symbol = serializers.CharField(max_length=32)
    price = PriceInputField()


class SimPriceApi(APIView):
    """Staff set the paper venue's price; it drives fills and P&L exactly like a simulated tick."""

    @extend_schema(
        request=SimPriceInputSerializer,
        responses=inline_serializer(
            "SimPrice",
            {"symbol": serializers.CharField(), "price": serializers.CharField()},
        ),
    )
    def post(self, request: Request) -> Response:
        if not settings.PAPER_BROKER_ENABLED:
            raise Http404
        if not request.user.is_staff:
            raise PermissionDenied("Only staff can set paper prices.", code="staff_only")
        data = SimPriceInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        instrument = resolve_instrument(data.validated_data["symbol"])
        price = feed.publish_price(symbol=instrument.symbol, price=data.validated_data["price"])
        return Response({"symbol": instrument.symbol, "price": str(price)})
