"""Steps the browser tests share."""
from __future__ import annotations

from tests.factories import PASSWORD


def log_in(page, base_url: str, username: str, password: str = PASSWORD) -> None:  # noqa: ANN001
    """Sign in through the login form and wait for the home page."""
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")
