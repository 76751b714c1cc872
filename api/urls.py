from django.urls import path, re_path

from api import push_views, views

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
    # Web Push (api/push_views.py)
    path("push/public-key", push_views.PublicKeyView.as_view(), name="push-public-key"),
    path(
        "me/push-subscriptions",
        push_views.PushSubscriptionsView.as_view(),
        name="push-subscriptions",
    ),
    path(
        "me/push-subscriptions/<str:subscription_id>",
        push_views.PushSubscriptionView.as_view(),
        name="push-subscription",
    ),
    path("me/preferences", push_views.PreferencesView.as_view(), name="preferences"),
]
