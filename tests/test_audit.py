"""The audit log: admin and API actions on tokens, provider keys, members, orgs and secrets, never their values."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from orgs.models import ApiToken, AuditAction, AuditEvent, Collection, Membership, Org, ProviderKey, Role


@pytest.fixture
def admin_client(client, db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    client.user = user
    return client


def audit_rows() -> str:
    """Every audit row, every column, as one string to search for leaked secrets."""
    return json.dumps(list(AuditEvent.objects.values()), default=str)


def assert_never_audited(*secrets: str) -> None:
    rows = audit_rows()
    for secret in secrets:
        assert secret not in rows


def only(action: AuditAction, **filters) -> AuditEvent:
    events = list(AuditEvent.objects.filter(action=action, **filters))
    assert len(events) == 1, [str(e) for e in AuditEvent.objects.all()]
    return events[0]


def shown_token(response) -> str:
    messages = [str(m) for m in response.context["messages"]]
    return next(m.split(": ")[-1] for m in messages if "will not be shown again" in m)


def test_a_token_created_in_admin_is_audited_without_its_value(admin_client):
    org = Org.objects.create(name="acme")
    response = admin_client.post("/admin/orgs/apitoken/add/", {"org": org.pk, "name": "ci"}, follow=True)
    plain = shown_token(response)
    token = ApiToken.objects.get(org=org, name="ci")
    event = only(AuditAction.TOKEN_CREATED)
    assert event.org == org and event.org_name == "acme"
    assert event.actor == "user root" and event.actor_user == admin_client.user
    assert event.ip == "127.0.0.1"
    assert (event.target_type, event.target_id) == ("apitoken", str(token.pk))
    assert event.details["name"] == "ci" and event.details["prefix"] == token.prefix
    assert_never_audited(plain, token.token_hash)


def test_revoking_tokens_with_the_admin_action_is_audited(admin_client):
    org = Org.objects.create(name="acme")
    token, plain = ApiToken.generate(org, name="old")
    already, _ = ApiToken.generate(org, name="gone")
    ApiToken.objects.filter(pk=already.pk).update(revoked_at="2026-01-01T00:00:00Z")
    admin_client.post("/admin/orgs/apitoken/", {"action": "revoke_tokens", "_selected_action": [token.pk, already.pk]})
    event = only(AuditAction.TOKEN_REVOKED)
    assert event.target_id == str(token.pk) and event.actor == "user root" and event.org == org
    assert_never_audited(plain)


def test_revoking_a_token_in_its_change_form_is_audited(admin_client):
    org = Org.objects.create(name="acme")
    token, plain = ApiToken.generate(org, name="ci")
    form = {"org": org.pk, "name": "ci", "revoked_at_0": "2026-11-29", "revoked_at_1": "07:00:00"}
    response = admin_client.post(f"/admin/orgs/apitoken/{token.pk}/change/", form)
    assert response.status_code == 302
    event = only(AuditAction.TOKEN_REVOKED)
    assert event.details["fields"] == ["revoked_at"] and event.target_id == str(token.pk)
    assert_never_audited(plain)


def test_deleting_a_token_in_admin_is_audited(admin_client):
    org = Org.objects.create(name="acme")
    token, _ = ApiToken.generate(org, name="ci")
    response = admin_client.post(f"/admin/orgs/apitoken/{token.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not ApiToken.objects.exists()
    event = only(AuditAction.TOKEN_DELETED)
    assert event.target_id == str(token.pk) and event.target_repr.startswith(token.prefix)


def test_the_createtoken_command_is_audited(db, capsys):
    org = Org.objects.create(name="acme")
    call_command("createtoken", "acme", "--name", "cli")
    plain = capsys.readouterr().out.strip().splitlines()[-1]
    event = only(AuditAction.TOKEN_CREATED)
    assert event.actor == "command createtoken" and event.actor_user is None and event.org == org
    assert_never_audited(plain)


def test_provider_keys_created_changed_and_deleted_in_admin_are_audited_without_the_key(admin_client):
    org = Org.objects.create(name="acme")
    first, second = "sk-live-first-abcdefghijklmnop", "sk-live-second-qrstuvwxyz0123"
    # ``initial-model_names``: the hidden initial value the admin renders for a field with a callable default.
    form = {"org": org.pk, "provider": "openai", "api_base": "", "model_names": "[]", "initial-model_names": "[]"}
    assert admin_client.post("/admin/orgs/providerkey/add/", {**form, "key": first}).status_code == 302
    key = ProviderKey.objects.get(org=org)
    created = only(AuditAction.PROVIDER_KEY_CREATED)
    assert created.details["provider"] == "openai" and created.actor == "user root"

    url = f"/admin/orgs/providerkey/{key.pk}/change/"
    assert admin_client.post(url, {**form, "key": second}).status_code == 302
    assert only(AuditAction.PROVIDER_KEY_CHANGED).details["fields"] == ["key"]
    assert admin_client.post(url, {**form, "api_base": "https://proxy.example/v1"}).status_code == 302
    changes = AuditEvent.objects.filter(action=AuditAction.PROVIDER_KEY_CHANGED).order_by("id")
    assert [e.details["fields"] for e in changes] == [["key"], ["api_base"]]
    unchanged = {**form, "api_base": "https://proxy.example/v1"}
    assert admin_client.post(url, unchanged).status_code == 302  # nothing changed: nothing recorded
    assert changes.count() == 2

    assert admin_client.post(f"/admin/orgs/providerkey/{key.pk}/delete/", {"post": "yes"}).status_code == 302
    deleted = only(AuditAction.PROVIDER_KEY_DELETED)
    assert deleted.target_id == str(key.pk) and deleted.org == org
    assert_never_audited(first, second, first[-12:], second[-12:])


def test_memberships_added_changed_and_removed_in_admin_are_audited(admin_client):
    org = Org.objects.create(name="acme")
    user = get_user_model().objects.create_user("carol")
    form = {"org": org.pk, "user": user.pk, "role": "viewer"}
    assert admin_client.post("/admin/orgs/membership/add/", form).status_code == 302
    membership = Membership.objects.get(org=org, user=user)
    added = only(AuditAction.MEMBERSHIP_ADDED)
    assert added.details == {"user": "carol", "role": "viewer"} and added.org == org

    url = f"/admin/orgs/membership/{membership.pk}/change/"
    assert admin_client.post(url, {**form, "role": "admin"}).status_code == 302
    changed = only(AuditAction.MEMBERSHIP_CHANGED)
    assert changed.details["role"] == "admin" and changed.details["previous_role"] == "viewer"

    assert admin_client.post(f"/admin/orgs/membership/{membership.pk}/delete/", {"post": "yes"}).status_code == 302
    removed = only(AuditAction.MEMBERSHIP_REMOVED)
    assert removed.details["user"] == "carol" and removed.target_id == str(membership.pk)


def org_form(name: str, members: list[dict], initial: int = 0) -> dict:
    form = {
        "name": name,
        "allowed_models": "[]",
        "memberships-TOTAL_FORMS": str(len(members)),
        "memberships-INITIAL_FORMS": str(initial),
        "collections-TOTAL_FORMS": "0",
        "collections-INITIAL_FORMS": "0",
    }
    for i, member in enumerate(members):
        form.update({f"memberships-{i}-{k}": v for k, v in member.items()})
    return form


def test_orgs_and_their_inline_members_are_audited_in_admin(admin_client):
    dave = get_user_model().objects.create_user("dave")
    response = admin_client.post("/admin/orgs/org/add/", org_form("initech", [{"user": dave.pk, "role": "owner"}]))
    assert response.status_code == 302, response.content.decode()[:2000]
    org = Org.objects.get(name="initech")
    assert only(AuditAction.ORG_CREATED).org == org
    assert only(AuditAction.MEMBERSHIP_ADDED).details == {"user": "dave", "role": "owner"}

    membership = Membership.objects.get(org=org)
    url = f"/admin/orgs/org/{org.pk}/change/"
    member = {"id": membership.pk, "org": org.pk, "user": dave.pk, "role": "member"}
    form = org_form("initech", [member], initial=1)
    form["allowed_models"] = '["scripted/*"]'
    assert admin_client.post(url, form).status_code == 302
    changed = only(AuditAction.ORG_CHANGED)
    assert changed.details["fields"] == ["allowed_models"] and changed.details["allowed_models"] == ["scripted/*"]
    assert only(AuditAction.MEMBERSHIP_CHANGED).details["previous_role"] == "owner"

    removal = org_form("initech", [{**member, "DELETE": "on"}], initial=1)
    assert admin_client.post(url, removal).status_code == 302
    assert not Membership.objects.filter(org=org).exists()
    assert only(AuditAction.MEMBERSHIP_REMOVED).details == {"user": "dave", "role": "member"}

    assert admin_client.post(f"/admin/orgs/org/{org.pk}/delete/", {"post": "yes"}).status_code == 302
    deleted = only(AuditAction.ORG_DELETED)
    assert deleted.org is None and deleted.org_name == "initech"  # the row outlives its org


def test_collection_secrets_changed_through_the_api_are_audited_by_name(alice, alice_api):
    alice_api.post("/api/v1/collections", {"name": "docs"}, format="json")
    url = "/api/v1/collections/docs/environment"
    secret, plain_value = "v-very-secret-value-123", "plain-value-456"
    body = {"secrets": {"K": secret}, "env": {"REGION": plain_value}}
    assert alice_api.patch(url, body, format="json").status_code == 200
    event = only(AuditAction.ENVIRONMENT_CHANGED)
    assert event.org == alice.org and event.actor == f"token {alice.api_token.prefix}…"
    assert event.target_type == "collection" and event.target_repr == "acme/docs"
    assert event.details == {"secrets": {"set": ["K"], "deleted": []}, "env": {"set": ["REGION"], "deleted": []}}

    assert alice_api.patch(url, {"secrets": {"K": None, "NEVER_SET": None}}, format="json").status_code == 200
    latest = AuditEvent.objects.filter(action=AuditAction.ENVIRONMENT_CHANGED).first()
    assert latest is not None and latest.details == {"secrets": {"set": [], "deleted": ["K"]}}
    assert_never_audited(secret, plain_value, alice.token)


def test_an_invalid_environment_change_records_nothing(alice_api):
    alice_api.post("/api/v1/collections", {"name": "docs"}, format="json")
    response = alice_api.patch("/api/v1/collections/docs/environment", {"secrets": {"K": 3}}, format="json")
    assert response.status_code == 400
    assert not AuditEvent.objects.filter(action=AuditAction.ENVIRONMENT_CHANGED).exists()


def test_collection_secrets_changed_in_admin_are_audited_by_name(admin_client):
    org = Org.objects.create(name="acme")
    collection = Collection.objects.create(org=org, name="docs")
    secret = "col-secret-in-admin-0123"
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
    url = f"/admin/orgs/collection/{collection.pk}/change/"
    assert admin_client.post(url, form).status_code == 302
    event = only(AuditAction.ENVIRONMENT_CHANGED)
    assert event.details == {"secrets": {"set": ["API_TOKEN"], "deleted": []}} and event.actor == "user root"

    variable = collection.variables.get()
    unchanged = {
        **form,
        "variables-INITIAL_FORMS": "1",
        "variables-0-id": variable.pk,
        "variables-0-collection": collection.pk,
        "variables-0-value": "",
    }
    assert admin_client.post(url, unchanged).status_code == 302  # the value left empty keeps it: no change
    assert AuditEvent.objects.filter(action=AuditAction.ENVIRONMENT_CHANGED).count() == 1
    assert admin_client.post(url, {**unchanged, "variables-0-DELETE": "on"}).status_code == 302
    latest = AuditEvent.objects.filter(action=AuditAction.ENVIRONMENT_CHANGED).first()
    assert latest is not None and latest.details == {"secrets": {"set": [], "deleted": ["API_TOKEN"]}}
    assert_never_audited(secret)


def test_the_audit_log_is_read_only_in_admin(admin_client):
    org = Org.objects.create(name="acme")
    admin_client.post("/admin/orgs/apitoken/add/", {"org": org.pk, "name": "ci"})
    event = only(AuditAction.TOKEN_CREATED)
    listing = admin_client.get("/admin/orgs/auditevent/", {"action": "token.created", "org__id__exact": org.pk})
    assert listing.status_code == 200 and "token.created" in listing.content.decode()
    assert admin_client.get("/admin/orgs/auditevent/", {"q": "root"}).status_code == 200
    assert admin_client.get("/admin/orgs/auditevent/add/").status_code == 403
    page = admin_client.get(f"/admin/orgs/auditevent/{event.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert admin_client.post(f"/admin/orgs/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_creating_an_org_with_its_owner_records_both(db):
    from orgs.actions import create_org

    org = create_org("hooli", "gavin")
    assert only(AuditAction.ORG_CREATED).actor == "system"
    assert only(AuditAction.MEMBERSHIP_ADDED).details == {"user": "gavin", "role": Role.OWNER.value}
    assert org.memberships.get().role == Role.OWNER
