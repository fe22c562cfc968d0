from django.core.management.base import BaseCommand

from credentials.encryption import encryption_keys_verify


class Command(BaseCommand):
    help = "Fail unless FIELD_ENCRYPTION_KEY opens what this platform encrypted."

    def handle(self, *args, **options):
        encryption_keys_verify()
        self.stdout.write(self.style.SUCCESS("Encryption keys OK."))
