from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic import RedirectView

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Browsers ask for /favicon.ico whatever the page links to. The static URL is resolved per request: with the
    # manifest storage of production it only exists after collectstatic, and the URL conf loads before that.
    # Not permanent, so a browser never keeps a hashed name that a later deploy removes. The login page wants it too.
    path(
        "favicon.ico",
        login_not_required(RedirectView.as_view(url=lazy(static, str)("favicon.svg"), permanent=False)),
        name="favicon",
    ),
    path("admin/", admin.site.urls),
    path("api/", include("labeling.api_urls")),
    path("", include("training.urls")),
    path("", include("labeling.urls")),
]
