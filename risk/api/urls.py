from django.urls import path

from risk.api import views

urlpatterns = [
    path("accounts/<int:account_id>/risk/", views.AccountRiskApi.as_view(), name="account-risk"),
    path("accounts/<int:account_id>/halt/", views.AccountHaltApi.as_view(), name="account-halt"),
    path("accounts/<int:account_id>/resume/", views.AccountResumeApi.as_view(), name="account-resume"),
    path("violations/", views.ViolationListApi.as_view(), name="violation-list"),
]
