from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def development(settings, tmp_path):
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path


def run() -> str:
    output = StringIO()
    call_command("dev_admin", stdout=output)
    return output.getvalue()


def test_creates_the_account_once_and_prints_the_same_login_each_time(development, client):
    first, second = run(), run()

    assert first == second
    password = first.split("password ")[1].strip().strip("'")
    assert get_user_model().objects.filter(username="admin", is_superuser=True).count() == 1
    assert client.login(username="admin", password=password)


def test_a_changed_password_is_kept_and_not_printed(development):
    run()
    user = get_user_model().objects.get(username="admin")
    user.set_password("my own password")
    user.save()

    assert "password changed" in run()
    user.refresh_from_db()
    assert user.check_password("my own password")


def test_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="only runs with DEBUG on"):
        run()
    assert not get_user_model().objects.exists()
