from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from orgs.actions import create_token
from orgs.audit import Actor
from orgs.models import Collection, Org


class Command(BaseCommand):
    help = "Create an API token for an org. The token is printed alone on the last line, once."

    def add_arguments(self, parser):
        parser.add_argument("org", help="Org name or public id")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--collection", help="Scope the token to this collection of the org")
        parser.add_argument("--expires-days", type=int, help="Expire after this many days")

    def handle(self, org: str, name: str, collection: str | None, expires_days: int | None, **options):
        found = Org.objects.filter(name=org).first() or Org.objects.filter(public_id=org).first()
        if found is None:
            raise CommandError(f"No org named {org!r}")
        scope = None
        if collection:
            scope = Collection.objects.filter(org=found, name=collection).first()
            if scope is None:
                raise CommandError(f"No collection {collection!r} in {found.name}")
        expires = timezone.now() + timedelta(days=expires_days) if expires_days else None
        token, plain = create_token(
            found, name=name, collection=scope, expires_at=expires, actor=Actor.command("createtoken")
        )
        self.stdout.write(
            f"Created token {token.prefix}… for {found.name}" + (f" (collection {scope.name})" if scope else "")
        )
        self.stdout.write(plain)
