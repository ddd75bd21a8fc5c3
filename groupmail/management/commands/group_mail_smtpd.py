"""`python manage.py group_mail_smtpd`: the local SMTP listener for group mail (groupmail/smtp.py),
on GROUP_MAIL_SMTP_HOST:GROUP_MAIL_SMTP_PORT (127.0.0.1:2525). `make run` starts it."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Receive members' messages to the study groups by SMTP, for development (GROUP_MAIL_SMTP_HOST:GROUP_MAIL_SMTP_PORT)."

    def handle(self, *args, **options):
        if not settings.GROUP_MAIL_DOMAIN:
            raise CommandError("GROUP_MAIL_DOMAIN is not set: group mail is off, there is nothing to listen for.")
        try:
            from groupmail.smtp import smtp_listener_start

            host, port = settings.GROUP_MAIL_SMTP_HOST, settings.GROUP_MAIL_SMTP_PORT
            controller = smtp_listener_start(host, port)
        except ImportError as error:
            raise CommandError(f"{error}: install the development requirements (pip install -r requirements-dev.txt).") from error
        except OSError as error:
            raise CommandError(f"Cannot listen on {settings.GROUP_MAIL_SMTP_HOST}:{settings.GROUP_MAIL_SMTP_PORT}: {error}") from error
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())  # honcho stops its processes with SIGTERM
        self.stdout.write(
            f"Group mail SMTP listener on {host}:{port}: send to <group-slug>@{settings.GROUP_MAIL_DOMAIN}; "
            "relayed copies appear in the outbox (/dev/outbox/). Ctrl-C stops it."
        )
        try:
            while not stopped.wait(timeout=1):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            controller.stop()
