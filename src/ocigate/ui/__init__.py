"""The web UI at ``/ui/``: server-rendered pages over the same ``Registry`` stack as the API.

config.py    the ``ui:`` section (enabled, path, session secret and lifetime, page size)
session.py   the signed login cookie: who is logged in, until when
views.py     what a page shows, read through the Registry (so through the access policy)
html.py      escaping, the page frame and the stylesheet
pages.py     one function per page, from a view to HTML
routes.py    paths -> pages, login and logout with an origin check, errors as HTML
"""
