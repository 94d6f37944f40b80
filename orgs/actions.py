"""Write functions for orgs and tokens, shared by admin, management commands and (later) the API."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import transaction

from .models import ApiToken, Collection, Membership, Org, Role


@transaction.atomic
def create_org(name: str, owner_username: str | None = None, owner_password: str | None = None) -> Org:
    org = Org.objects.create(name=name)
    if owner_username:
        User = get_user_model()
        user, created = User.objects.get_or_create(username=owner_username)
        if created or owner_password:
            if owner_password:
                user.set_password(owner_password)
            else:
                user.set_unusable_password()
            user.save()
        Membership.objects.create(org=org, user=user, role=Role.OWNER)
    return org


@transaction.atomic
def create_token(
    org: Org,
    *,
    name: str = "default",
    collection: Collection | None = None,
    expires_at: datetime | None = None,
    created_by=None,
) -> tuple[ApiToken, str]:
    return ApiToken.generate(org, name=name, collection=collection, expires_at=expires_at, created_by=created_by)
