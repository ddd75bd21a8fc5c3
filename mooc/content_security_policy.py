"""The Content-Security-Policy header (django-csp): strict on the public pages, wider for staff.

The public pages follow `CONTENT_SECURITY_POLICY` in settings: everything comes from this
site, nothing is inline (no <script> or <style> in the page, no style="" attributes), no
plugins, no <base>, no framing, and forms post only here.

The admin and the development outbox show emails as mail programs will: an email's HTML
(inline styles throughout, pictures from anywhere) in a sandboxed frame written with
srcdoc, and such a frame takes the policy of the page around it. Those pages allow inline
styles and images from https too; scripts stay this site's own files everywhere.
"""

from csp.constants import SELF, UNSAFE_INLINE
from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings

STAFF_PAGE_PREFIXES = ("/admin/", "/dev/")
STAFF_PAGE_DIRECTIVES = {"style-src": [SELF, UNSAFE_INLINE], "img-src": [SELF, "data:", "https:"]}


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware, with the wider policy on the staff pages."""

    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only=report_only)
        if not report_only and request.path_info.startswith(STAFF_PAGE_PREFIXES):
            # A view's own @csp_replace still has the last word.
            parts.replace = STAFF_PAGE_DIRECTIVES | (parts.replace or {})
        return parts

    def process_response(self, request, response):
        # django-csp builds the policy even for a response exempt from it (@csp_exempt: the
        # providers' webhooks, hundreds a second), only to leave it out.
        if getattr(response, "_csp_exempt", False) and not getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None):
            return response
        return super().process_response(request, response)
