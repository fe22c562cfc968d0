from django.core.management.base import BaseCommand

from credentials.encryption import credentials_reencrypt


class Command(BaseCommand):
    help = (
        "Re-encrypt every tenant's credential secrets with the first key of "
        "FIELD_ENCRYPTION_KEY, so older keys can then be removed. Safe to re-run."
    )

    def handle(self, *args, **options):
        report = credentials_reencrypt(progress=self.stdout.write)
        self.stdout.write(
            self.style.SUCCESS(
                f"Done: {report.tenants} tenant(s), {report.reencrypted} credential(s) "
                f"re-encrypted, {report.already_current} already under the first key."
            )
        )
