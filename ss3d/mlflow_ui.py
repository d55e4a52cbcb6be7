"""``make ui``: MLflow's UI for one person, landing in its model-training view.

MLflow 3.17's UI has two modes, GenAI (traces, latency, cost, "Evaluations") and model
training (the runs table and its charts). The experiment tag ``mlflow.experimentKind`` does not
choose between them (the UI's workflow switch is on, and then only the switch counts): the mode
is a browser setting, read from

1. the ``workflowType`` parameter of the page's URL (``#/experiments/1/runs?workflowType=
   machine_learning``; :func:`ss3d.tracking.ui_url` builds such links, and the report uses it),
   which the UI does not remember; else
2. the browser's ``localStorage["mlflow.workflowType_v1"]`` (JSON, ``"genai"`` or
   ``"machine_learning"``), written when the user flips the switch; else GenAI.

So the page this server sends sets (2) to model training in a browser that never chose: a
user who opens the UI's home page and clicks an experiment lands in the runs table, and a user
who flips the switch keeps their choice. It is MLflow's own server otherwise (``mlflow ui``
with its options), with one web worker and no job runner (the GenAI jobs: judges, trace
rollups) unless asked for: one person's browser needs no more.

``python -m ss3d.mlflow_ui [mlflow ui options]``.
"""

from __future__ import annotations

import os
import sys

__all__ = ["WORKFLOW_KEY", "WORKFLOW_SCRIPT", "main"]

WORKFLOW_KEY = "mlflow.workflowType_v1"
#: Put first in the page's <head>: runs before MLflow's own scripts read the setting.
WORKFLOW_SCRIPT = (
    "<script>try{if(!window.localStorage.getItem('" + WORKFLOW_KEY + "'))"
    "window.localStorage.setItem('" + WORKFLOW_KEY + "',JSON.stringify('machine_learning'))}"
    "catch(e){}</script>")
_MLFLOW_APP = "mlflow.server.fastapi_app:app"
_OUR_APP = "ss3d.mlflow_ui:app"


def _inject(response):  # a Flask response of MLflow's server
    """The UI's page (the HTML the server sends for ``/``) with :data:`WORKFLOW_SCRIPT`."""
    if response.status_code != 200 or response.mimetype != "text/html":
        return response
    response.direct_passthrough = False  # a static file: read it to rewrite it
    page = response.get_data(as_text=True)
    if "<head>" not in page or WORKFLOW_KEY in page:
        return response
    response.set_data(page.replace("<head>", "<head>" + WORKFLOW_SCRIPT, 1))
    for header in ("ETag", "Last-Modified"):  # a cached untouched page must not answer for it
        response.headers.pop(header, None)
    return response


def _unconditional() -> None:
    """The page is sent whole, never "304 Not Modified": a browser that cached MLflow's own
    page (a plain ``mlflow ui`` on this port before) would keep it, without the script."""
    from flask import request

    if request.path.endswith("/"):
        for key in ("HTTP_IF_MODIFIED_SINCE", "HTTP_IF_NONE_MATCH"):
            request.environ.pop(key, None)


def __getattr__(name: str):
    """``app``: MLflow's ASGI app with the page rewritten, imported only by the server process
    (uvicorn loads ``ss3d.mlflow_ui:app``)."""
    if name != "app":
        raise AttributeError(name)
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import app as asgi_app

    if _inject not in flask_app.after_request_funcs.get(None, []):
        flask_app.before_request(_unconditional)
        flask_app.after_request(_inject)
    globals()["app"] = asgi_app
    return asgi_app


def main(argv: list[str] | None = None) -> int:
    """``mlflow ui`` with :data:`app`, one worker and no job runner unless the options or the
    environment say otherwise."""
    import mlflow.server
    from mlflow.cli import cli

    build = mlflow.server._build_uvicorn_command

    def ours(*args, **kwargs):
        args = [_OUR_APP if a == _MLFLOW_APP else a for a in args]
        kwargs = {k: _OUR_APP if v == _MLFLOW_APP else v for k, v in kwargs.items()}
        return build(*args, **kwargs)

    mlflow.server._build_uvicorn_command = ours
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a in ("-w", "--workers") or a.startswith("--workers=") for a in argv):
        argv += ["--workers", "1"]
    return cli.main(["ui", *argv], prog_name="mlflow", standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main())
