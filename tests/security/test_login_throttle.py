"""Finding 6: no login throttle. 40 wrong passwords, then the right one, must not log in, on /login/ and on
/admin/login/: the username is locked, and so is the address the guesses came from (a guesser spreading over many
usernames). The login page says why; an admin unlocks (the admin's access attempts, or `manage.py axes_reset`).
API bearer tokens are not throttled by any of it."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from urllib.parse import urlsplit

from django.core.management import call_command
from django.test import Client

from tests.support.browser import give_password

GUESSES = 40
LOCKED = "Too many failed logins"


class Browser:
    """A cookie-keeping client of the live server, posting the login forms the way a browser would."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(CookieJar()), urllib.request.HTTPErrorProcessor()
        )

    def request(self, path: str, data: dict | None = None) -> tuple[int, str, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(urllib.request.Request(self.base_url + path, data=body), timeout=30) as response:
                return response.status, response.geturl(), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.geturl(), error.read().decode()

    def log_in(self, path: str, username: str, password: str) -> tuple[int, str, str]:
        _, _, page = self.request(path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, page[:500]
        return self.request(path, {"csrfmiddlewaretoken": token.group(1), "username": username, "password": password})


def test_forty_wrong_passwords_lock_the_user_on_both_login_pages(jetty, alice):
    give_password(alice.owner, "right-password")
    alice.owner.is_staff = True
    alice.owner.save()
    for path, lands in (("/login/", "/runs/"), ("/admin/login/?next=/admin/", "/admin/")):
        browser = Browser(jetty.url)
        for _ in range(GUESSES):
            browser.log_in(path, alice.owner.username, "wrong-password")
        status, url, page = browser.log_in(path, alice.owner.username, "right-password")
        assert status == 429 and LOCKED in page, (path, status, url)
        assert urlsplit(url).path != lands, (path, url)

        # An admin unlocks: the account logs in again.
        call_command("axes_reset")
        status, url, page = Browser(jetty.url).log_in(path, alice.owner.username, "right-password")
        assert status == 200 and urlsplit(url).path == lands, (path, status, url)


def test_guesses_over_many_usernames_lock_the_address(jetty, alice):
    give_password(alice.member, "right-password")
    browser = Browser(jetty.url)
    for i in range(GUESSES):
        browser.log_in("/login/", f"nobody-{i}", "wrong-password")
    status, _, page = browser.log_in("/login/", alice.member.username, "right-password")
    assert status == 429 and LOCKED in page


def test_a_locked_username_is_locked_from_every_address(alice):
    give_password(alice.viewer, "right-password")
    for i in range(GUESSES):
        Client(REMOTE_ADDR=f"10.0.{i}.1").post("/login/", {"username": alice.viewer.username, "password": "nope"})
    response = Client(REMOTE_ADDR="10.9.9.9").post(
        "/login/", {"username": alice.viewer.username, "password": "right-password"}
    )
    assert response.status_code == 429 and LOCKED in response.content.decode()


def test_the_admin_unlocks_from_the_access_attempts_page(alice):
    from axes.models import AccessAttempt

    give_password(alice.member, "right-password")
    for _ in range(GUESSES):
        Client(REMOTE_ADDR="10.1.1.1").post("/login/", {"username": alice.member.username, "password": "nope"})
    assert AccessAttempt.objects.exists()
    admin = Client()
    alice.owner.is_staff = alice.owner.is_superuser = True
    alice.owner.save()
    admin.force_login(alice.owner)
    assert admin.get("/admin/axes/accessattempt/").status_code == 200
    ids = [str(pk) for pk in AccessAttempt.objects.values_list("pk", flat=True)]
    response = admin.post(
        "/admin/axes/accessattempt/", {"action": "delete_selected", "_selected_action": ids, "post": "yes"}
    )
    assert response.status_code == 302 and not AccessAttempt.objects.exists()
    response = Client(REMOTE_ADDR="10.1.1.1").post(
        "/login/", {"username": alice.member.username, "password": "right-password"}
    )
    assert response.status_code == 302 and response["Location"] == "/runs/"


def test_api_tokens_are_not_throttled_by_failed_logins(jetty, alice):
    browser = Browser(jetty.url)
    for i in range(GUESSES):
        browser.log_in("/login/", f"nobody-{i}", "wrong-password")
    request = urllib.request.Request(f"{jetty.url}/api/v1/runs", headers={"Authorization": f"Bearer {alice.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    request = urllib.request.Request(f"{jetty.url}/v1/models", headers={"Authorization": f"Bearer {alice.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def test_a_guessers_own_logins_do_not_reset_its_count_against_another_user(jetty, alice, bob):
    """Found by the outside attack pass: a success reset every failure of its username OR its address, so 9 guesses
    at the victim, one login to the guesser's own account from the same address, and again, guessed without end."""
    give_password(alice.owner, "victims-password")
    give_password(bob.owner, "guessers-password")
    browser = Browser(jetty.url)
    for _ in range(4):
        for _ in range(9):
            browser.log_in("/login/", alice.owner.username, "a-guess")
        Browser(jetty.url).log_in("/login/", bob.owner.username, "guessers-password")
    status, _, page = Browser(jetty.url).log_in("/login/", alice.owner.username, "victims-password")
    assert status == 429 and LOCKED in page, status
