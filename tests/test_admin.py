"""Django admin: orgs, members, tokens (shown once, stored hashed) and provider keys (encrypted)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from orgs.auth import principal_for
from orgs.models import ApiToken, Membership, Org, ProviderKey, Role, hash_token


@pytest.fixture
def admin_client(client, db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    client.user = user
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/orgs/org/",
        "/admin/orgs/org/add/",
        "/admin/orgs/membership/",
        "/admin/orgs/apitoken/",
        "/admin/orgs/apitoken/add/",
        "/admin/orgs/providerkey/",
        "/admin/orgs/providerkey/add/",
        "/admin/orgs/collection/",
        "/admin/trajectories/run/",
        "/admin/runs/task/",
        "/admin/runs/taskversion/",
        "/admin/runs/routine/",
        "/admin/runs/routine/add/",
        "/admin/runs/workflow/",
    ],
)
def test_admin_pages_load(admin_client, url):
    Org.objects.create(name="acme")
    assert admin_client.get(url).status_code == 200


def test_admin_pages_refuse_non_staff(client, db):
    user = get_user_model().objects.create_user("someone", password="pw")
    client.force_login(user)
    response = client.get("/admin/orgs/apitoken/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_a_token_made_in_admin_is_shown_once_and_stored_hashed(admin_client):
    org = Org.objects.create(name="acme")
    response = admin_client.post("/admin/orgs/apitoken/add/", {"org": org.pk, "name": "ci"}, follow=True)
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    plain = next(m.split(": ")[-1] for m in messages if "will not be shown again" in m)
    token = ApiToken.objects.get(org=org, name="ci")
    assert token.token_hash == hash_token(plain) and plain not in (token.prefix, token.token_hash)
    assert plain.startswith(token.prefix)
    assert token.created_by == admin_client.user
    assert principal_for(plain).org == org
    page = admin_client.get(f"/admin/orgs/apitoken/{token.pk}/change/").content.decode()
    assert plain not in page


def test_revoking_in_admin_stops_the_token(admin_client):
    org = Org.objects.create(name="acme")
    token, plain = ApiToken.generate(org)
    admin_client.post("/admin/orgs/apitoken/", {"action": "revoke_tokens", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert principal_for(plain) is None


def test_provider_keys_are_encrypted_at_rest_and_never_shown(admin_client):
    org = Org.objects.create(name="acme")
    secret = "sk-live-abcdefghijklmnopqrstuvwxyz"
    response = admin_client.post(
        "/admin/orgs/providerkey/add/",
        {"org": org.pk, "provider": "openai", "key": secret, "api_base": "", "model_names": "[]"},
        follow=True,
    )
    assert response.status_code == 200
    key = ProviderKey.objects.get(org=org)
    assert secret not in key.encrypted_key and key.get_key() == secret
    listing = admin_client.get("/admin/orgs/providerkey/").content.decode()
    change = admin_client.get(f"/admin/orgs/providerkey/{key.pk}/change/").content.decode()
    assert secret not in listing and secret not in change
    assert key.masked in listing


def test_members_are_managed_with_roles(admin_client):
    org = Org.objects.create(name="acme")
    user = get_user_model().objects.create_user("viewer1")
    response = admin_client.post("/admin/orgs/membership/add/", {"org": org.pk, "user": user.pk, "role": "viewer"})
    assert response.status_code == 302
    assert Membership.objects.get(org=org, user=user).role == Role.VIEWER


def test_collection_secrets_are_encrypted_at_rest_and_never_shown(admin_client):
    from orgs.models import Collection, CollectionVariable

    org = Org.objects.create(name="acme")
    collection = Collection.objects.create(org=org, name="docs")
    secret = "col-secret-in-admin-0123"
    url = f"/admin/orgs/collection/{collection.pk}/change/"
    form = {
        "org": org.pk,
        "name": "docs",
        "description": "",
        "variables-TOTAL_FORMS": "1",
        "variables-INITIAL_FORMS": "0",
        "variables-0-name": "API_TOKEN",
        "variables-0-secret": "on",
        "variables-0-value": secret,
    }
    assert admin_client.post(url, form, follow=True).status_code == 200
    variable = CollectionVariable.objects.get(collection=collection)
    assert secret not in variable.value_encrypted and variable.value == secret and variable.secret
    assert secret not in admin_client.get(url).content.decode()
