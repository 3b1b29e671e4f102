"""Violations in one shape for the REST API and the live `risk.violation` event."""

from rest_framework import serializers

from risk.models import Violation


class ViolationSerializer(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", read_only=True)

    class Meta:
        model = Violation
        fields = [
            "id",
            "account",
            "account_name",
            "rule",
            "severity",
            "action",
            "threshold",
            "observed",
            "trade_date",
            "detail",
            "occurred_at",
            "is_active",
        ]
