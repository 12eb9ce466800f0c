"""Error pages people read (templates/400.html, 403.html, 404.html, 405.html, 500.html, throttled.html for 429).

Django renders 400, 403, 404 and 500 from those templates itself when DEBUG is off (the demo too: ADR 0028).
A 405 (hipaamail.middleware.MethodNotAllowedMiddleware, require_http_methods) has an empty body; this middleware
gives it the page when a browser asked for one, keeping the status and the Allow header. The integration API keeps
its own JSON answers."""
from django.template.loader import render_to_string

API_PREFIX = "/api/"


class MethodNotAllowedPageMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code == 405
            and not response.content
            and request.method != "HEAD"
            and not request.path.startswith(API_PREFIX)
            and "text/html" in request.headers.get("Accept", "")
        ):
            response.content = render_to_string("405.html", request=request)
            response["Content-Type"] = "text/html; charset=utf-8"
            if response.has_header("Content-Length"):  # CommonMiddleware, inside this one, set it for the empty body
                response["Content-Length"] = str(len(response.content))
        return response
