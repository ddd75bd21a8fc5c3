from functools import wraps

from django.conf import settings
from django.http import FileResponse, Http404
from django.shortcuts import render

from scheduler.outbox import outbox_message, outbox_message_path, outbox_page


def debug_only(view):
    """The development outbox exists only while DEBUG is on; otherwise it is not found."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not settings.DEBUG:
            raise Http404("The outbox is only available in development (DEBUG on).")
        return view(request, *args, **kwargs)

    return wrapper


@debug_only
def outbox_list(request):
    query = request.GET.get("q", "").strip()
    try:
        number = int(request.GET.get("page", 1))
    except ValueError:
        number = 1
    page = outbox_page(number, query)
    return render(request, "scheduler/outbox/list.html", {"page": page, "messages_in_outbox": page.messages, "query": query})


@debug_only
def outbox_detail(request, name):
    message = outbox_message(name)
    if message is None:
        raise Http404("No such message in the outbox.")
    return render(request, "scheduler/outbox/detail.html", {"message": message})


@debug_only
def outbox_raw(request, name):
    path = outbox_message_path(name)
    if path is None:
        raise Http404("No such message in the outbox.")
    return FileResponse(path.open("rb"), content_type="message/rfc822", as_attachment=True, filename=name)
