from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from orgs.models import Org
from runs.retention import prune
from trajectories.models import FINAL_STATUSES


class Command(BaseCommand):
    help = (
        "Delete finished runs older than --older-than days with their events, artifacts and the uploads only they "
        "used (files included), then unreferenced workspace blobs. Runs people labelled, and runs of experiments "
        "and label queues, are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS", help="Age cutoff in days")
        parser.add_argument("--org", help="Only this org (name or public id); blobs are collected across orgs")
        parser.add_argument(
            "--status",
            action="append",
            choices=sorted(FINAL_STATUSES),
            help="Only runs that ended so (repeat for several); default every finished status",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would go, delete nothing")

    def handle(self, older_than: int, org: str | None, status: list[str] | None, dry_run: bool, **options):
        if older_than < 1:
            raise CommandError("--older-than must be at least 1 day")
        scope = None
        if org:
            scope = Org.objects.filter(name=org).first() or Org.objects.filter(public_id=org).first()
            if scope is None:
                raise CommandError(f"No org named {org!r}")
        cutoff = timezone.now() - timedelta(days=older_than)
        report = prune(cutoff, org=scope, statuses=status, dry_run=dry_run)
        self.stdout.write(("would delete: " if dry_run else "deleted: ") + report.summary())
        if report.failed_files:
            raise CommandError(
                f"{len(report.failed_files)} file(s) could not be deleted from storage, such as "
                f"{report.failed_files[0]} (their rows are gone; delete them by hand)"
            )
