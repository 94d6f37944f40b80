from pathlib import Path

from django.core.management.base import BaseCommand

from runs.gateway.recorder import recover_spool


class Command(BaseCommand):
    help = "Store gateway calls left in spool segments by processes that died (Celery beat does this too)."

    def add_arguments(self, parser):
        parser.add_argument("--spool-dir", help="Defaults to JETTY_SPOOL_DIR")

    def handle(self, spool_dir: str | None, **options):
        stored = recover_spool(Path(spool_dir) if spool_dir else None)
        self.stdout.write(f"recovered {stored} run(s)")
