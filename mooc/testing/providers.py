"""Stand-ins for a mail provider, for tests and benchmarks only (never in settings for real use).

- ScriptedAnymailBackend: Anymail's own test backend (messages in django.core.mail.outbox,
  with the Anymail parameters they would carry), which can be told to fail for an address:
  `ScriptedAnymailBackend.script["ada@example.org"] = [AnymailAPIError(status_code=503), None]`
  plays one outcome per send to that address (None: accept).
- FileProviderBackend: writes each accepted message as an .eml to EMAIL_OUTBOX_DIR, like the
  outbox, optionally slowly (FAKE_PROVIDER_DELAY seconds): evidence that survives the process,
  for tests with real worker processes.
- DiscardingAnymailBackend: Anymail's test backend that keeps nothing, for benchmarks that
  must not grow their memory with every email.
"""

import itertools
import os
import time
from types import SimpleNamespace

from anymail.backends.test import EmailBackend as AnymailTestBackend
from django.core import mail

from scheduler.outbox import OutboxEmailBackend


class ScriptedAnymailBackend(AnymailTestBackend):
    script: dict[str, list] = {}

    def post_to_esp(self, payload, message):
        for address in message.to:
            outcomes = self.script.get(address)
            if outcomes:
                outcome = outcomes.pop(0)
                if outcome is not None:
                    raise outcome
        return super().post_to_esp(payload, message)


class FileProviderBackend(OutboxEmailBackend):
    _ids = itertools.count(1)

    def send_messages(self, email_messages):
        delay = float(os.environ.get("FAKE_PROVIDER_DELAY", "0") or 0)
        sent = 0
        for message in email_messages:
            if delay:
                time.sleep(delay)
            sent += super().send_messages([message])
            message.anymail_status = SimpleNamespace(message_id=f"file-{os.getpid()}-{next(self._ids)}")
        return sent


class DiscardingAnymailBackend(AnymailTestBackend):
    def post_to_esp(self, payload, message):
        response = super().post_to_esp(payload, message)
        mail.outbox.clear()
        return response

    def get_esp_message_id(self, message):
        return f"bench-{id(message)}"
