"""gunicorn settings for production: `gunicorn -c python:mvne.platform.gunicorn_conf 'mvne.platform.wsgi:app'`.

Options on the command line (`-w`, `--threads`, `-b`) override these. The worker class answers the
errors gunicorn raises itself (request line or headers too large, unparsable requests) as
`application/problem+json`, like every other error of the API.
"""

from __future__ import annotations

worker_class = "mvne.platform.server_errors.ProblemThreadWorker"
threads = 8
# gunicorn's own bounds, stated: a request line over 4094 bytes is a 414 problem, more than 100
# header fields or one over 8190 bytes a 431 problem.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
