"""Prometheus metrics shared by the web app and the workers."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "mvne_http_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "mvne_http_request_seconds",
    "HTTP request latency by route",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOBS_DONE = Counter("mvne_jobs_total", "Jobs processed by actor and outcome", ["actor", "outcome"])
USAGE_RECORDS = Counter("mvne_usage_records_total", "Usage records by outcome", ["outcome"])
