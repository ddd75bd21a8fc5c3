import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

USERNAME = "admin"


class Command(BaseCommand):
    help = "Development only (DEBUG on): create an admin account once and print its login."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("dev_admin only runs with DEBUG on: create production accounts with createsuperuser.")
        password_file = settings.VAR_DIR / "dev-admin-password.txt"
        User = get_user_model()
        user = User.objects.filter(username=USERNAME).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(USERNAME, email="admin@localhost", password=password)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        else:
            password = password_file.read_text().strip() if password_file.is_file() else None
            if password is not None and not user.check_password(password):
                password = None  # changed since: the file no longer tells the truth
        url = f"{settings.SITE_URL}/admin/"
        if password is None:
            self.stdout.write(f"Admin: {url}  user {USERNAME!r} (password changed; reset it with: manage.py changepassword {USERNAME})")
        else:
            self.stdout.write(f"Admin: {url}  user {USERNAME!r}  password {password!r}")
