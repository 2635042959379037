from django.contrib.admin.apps import AdminConfig


class PreftuneAdminConfig(AdminConfig):
    default_site = "webapp.admin_site.PreftuneAdminSite"
