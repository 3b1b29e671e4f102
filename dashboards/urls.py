from django.urls import path

from dashboards import views

app_name = "dashboards"

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/<int:account_id>/activity/", views.account_activity, name="account-activity"),
]
