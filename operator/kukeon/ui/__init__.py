"""The web console: kukeond's page at ``/ui/``, on the API's own listeners.

``routes`` serves the page (plain HTML, CSS and ES modules shipped in ``static/``, no build
step, nothing fetched from elsewhere) and two small helpers of its own: who the caller is
(``/ui/whoami``) and a pasted manifest read into documents (``/ui/manifest``). The page
itself only calls the ordinary JSON API, with the caller's bearer token, so every view and
every button is authorized exactly as kukectl is. ``headers`` holds the strict security
headers every ``/ui/`` answer carries; ``manifests`` the reading of a pasted manifest;
``forward`` the local port-forward ``kukectl ui`` opens to the unix socket.

Nothing is imported here: kukectl loads ``forward`` without the API server behind
``routes`` (kukeond imports ``kukeon.ui.routes``).
"""
