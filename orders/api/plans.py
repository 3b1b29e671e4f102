"""REST endpoint of a position's management plan: attach or replace (POST), read (GET), cancel (DELETE)."""

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import get_tradable_account_for_user
from orders import plan_service, selectors
from orders.domain import OrderSource
from orders.plan_serializers import PlanSerializer
from orders.plans import parse_plan_request


class PositionPlanApi(APIView):
    @extend_schema(responses=PlanSerializer)
    def get(self, request: Request, position_id: int) -> Response:
        position = selectors.get_position_for_user(user=request.user, position_id=position_id)
        return Response(PlanSerializer(plan_service.latest_plan(position=position)).data)

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: PlanSerializer})
    def post(self, request: Request, position_id: int) -> Response:
        position = selectors.get_position_for_user(user=request.user, position_id=position_id)
        get_tradable_account_for_user(user=request.user, account_id=position.account_id)
        plan_request = parse_plan_request(request.data, now=timezone.now())
        plan = plan_service.attach_plan(
            position=position, request=plan_request, source=OrderSource.API, created_by=request.user
        )
        return Response(PlanSerializer(plan_service.latest_plan(position=plan.position)).data, status=201)

    @extend_schema(request=None, responses=PlanSerializer)
    def delete(self, request: Request, position_id: int) -> Response:
        position = selectors.get_position_for_user(user=request.user, position_id=position_id)
        get_tradable_account_for_user(user=request.user, account_id=position.account_id)
        plan = plan_service.cancel_plan(plan=plan_service.active_plan(position=position), actor=request.user)
        return Response(PlanSerializer(plan_service.latest_plan(position=plan.position)).data)
