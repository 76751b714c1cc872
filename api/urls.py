from django.urls import path, re_path

from api import views

# POST /api/v1/notifications is served in front of Django (api/publish_asgi.py)
# and documented by a schema-only view (api/schema.py).
urlpatterns = [
    re_path(
        r"^users/(?P<user_id>.{1,128})/presence$", views.PresenceView.as_view(), name="presence"
    ),
    path("me/notifications", views.MyNotificationsView.as_view(), name="my-notifications"),
    path("me/notifications/unread-count", views.UnreadCountView.as_view(), name="unread-count"),
    path("me/notifications/read", views.MarkReadView.as_view(), name="mark-read"),
    path(
        "me/notifications/<str:notification_id>",
        views.MyNotificationView.as_view(),
        name="my-notification",
    ),
]
