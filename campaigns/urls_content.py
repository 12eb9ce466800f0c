"""The content library (templates and blocks that compliance officers manage), mounted at /campaigns/content/ in
the "campaigns" namespace. Staff only (the default); the views also refuse marketers (404)."""
from django.urls import path

from campaigns import views_content

urlpatterns = [
    path("", views_content.content_library, name="content_library"),
    path("templates/new/", views_content.email_template_new, name="content_template_new"),
    path("templates/<int:item_id>/", views_content.email_template_edit, name="content_template_edit"),
    path("blocks/new/", views_content.content_block_new, name="content_block_new"),
    path("blocks/<int:item_id>/", views_content.content_block_edit, name="content_block_edit"),
    path("<str:kind>/<int:item_id>/<str:action>/", views_content.library_item_action, name="content_item_action"),
]
