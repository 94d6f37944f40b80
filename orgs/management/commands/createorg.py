from django.core.management.base import BaseCommand, CommandError

from orgs.actions import create_org
from orgs.audit import Actor
from orgs.models import Org


class Command(BaseCommand):
    help = "Create an organisation (optionally with an owner user)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--owner", help="Username of the owner (created if missing)")
        parser.add_argument("--password", help="Password to set for the owner")
        parser.add_argument("--if-missing", action="store_true", help="Succeed quietly if the org exists")

    def handle(self, name: str, owner: str | None, password: str | None, if_missing: bool, **options):
        existing = Org.objects.filter(name=name).first()
        if existing is not None:
            if if_missing:
                self.stdout.write(existing.public_id)
                return
            raise CommandError(f"An org named {name!r} already exists")
        org = create_org(name, owner, password, actor=Actor.command("createorg"))
        self.stdout.write(f"Created org {org.name}")
        self.stdout.write(org.public_id)
