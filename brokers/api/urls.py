from django.urls import path

from brokers.api import views

urlpatterns = [
    path("instruments/", views.InstrumentListApi.as_view(), name="instrument-list"),
    path("sim/prices/", views.SimPriceApi.as_view(), name="sim-price"),
]
