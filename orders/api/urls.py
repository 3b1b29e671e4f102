from django.urls import path

from orders.api import plans, views

urlpatterns = [
    path("orders/", views.OrderListCreateApi.as_view(), name="order-list"),
    path("orders/oco/", views.OcoCreateApi.as_view(), name="order-oco"),
    path("orders/<int:order_id>/", views.OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<int:order_id>/cancel/", views.OrderCancelApi.as_view(), name="order-cancel"),
    path("positions/", views.PositionListApi.as_view(), name="position-list"),
    path("positions/<int:position_id>/close/", views.PositionCloseApi.as_view(), name="position-close"),
    path("positions/<int:position_id>/plan/", plans.PositionPlanApi.as_view(), name="position-plan"),
    path("fills/", views.FillListApi.as_view(), name="fill-list"),
]
