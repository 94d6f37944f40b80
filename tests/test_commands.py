"""`createorg` and `createtoken` let scripts bootstrap: the token alone on the last line."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from orgs.auth import principal_for
from orgs.models import Collection, Membership, Org


def run(*args) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_createorg_makes_an_org_with_an_owner(db):
    lines = run("createorg", "acme", "--owner", "ann", "--password", "s3cret-pass")
    org = Org.objects.get(name="acme")
    assert lines[-1] == org.public_id
    assert Membership.objects.get(org=org).role == "owner"


def test_createorg_refuses_a_duplicate_unless_told(db):
    run("createorg", "acme")
    with pytest.raises(CommandError):
        run("createorg", "acme")
    assert run("createorg", "acme", "--if-missing")[-1] == Org.objects.get(name="acme").public_id


def test_createtoken_prints_a_working_token_last(db):
    run("createorg", "acme")
    token = run("createtoken", "acme")[-1]
    assert token.startswith("jty_") and " " not in token
    assert principal_for(token).org.name == "acme"


def test_createtoken_can_scope_and_expire(db):
    run("createorg", "acme")
    Collection.objects.create(org=Org.objects.get(name="acme"), name="support")
    token = run("createtoken", "acme", "--collection", "support", "--expires-days", "2")[-1]
    principal = principal_for(token)
    assert principal.collection.name == "support"
    assert principal.token.expires_at > timezone.now() + timedelta(days=1)


def test_createtoken_rejects_unknown_orgs(db):
    with pytest.raises(CommandError):
        run("createtoken", "nobody")
