from django.urls import path

from accounts.api import views

urlpatterns = [
    path("me/", views.MeApi.as_view(), name="me"),
    path("accounts/", views.AccountListApi.as_view(), name="account-list"),
    path("accounts/<int:account_id>/", views.AccountDetailApi.as_view(), name="account-detail"),
    path("accounts/<int:account_id>/flatten/", views.AccountFlattenApi.as_view(), name="account-flatten"),
]
